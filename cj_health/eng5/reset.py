"""`cj-health eng5 reset`: empty the CJ tables of a dev or test database, or drop and recreate
them (the "recreate and reseed, no backfill" step of the task).

The guard, checked before anything is touched:
- CJ_ENVIRONMENT `staging` or `production` always refuses;
- the embedded server always counts as dev;
- any other server must have a database name ending in `_dev` or `_test`, or CJ_ENVIRONMENT
  must be `dev` or `test`.
A refusal raises `Refused` (exit 3) and changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from psycopg import sql

from cj_health.db import Database, connect, source_schema
from cj_health.errors import CjHealthError, Refused
from cj_health.schema import LEDGER_TABLE, SERVICE_TABLES, apply_migrations, table_exists

PROTECTED_ENVIRONMENTS = ("staging", "production")
DEV_ENVIRONMENTS = ("dev", "test")
DEV_NAME_SUFFIXES = ("_dev", "_test")
ENUM_TYPES = ("cj_batch_status_enum", "cj_batch_state_enum")


@dataclass
class ResetResult:
    database: str
    dropped: bool
    rows_removed: dict[str, int] = field(default_factory=dict)
    applied_migrations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        removed = ", ".join(f"{table} {count}" for table, count in self.rows_removed.items())
        if self.dropped:
            return (
                f"{self.database}: dropped and recreated the CJ tables "
                f"({', '.join(self.applied_migrations)}); rows removed: {removed}"
            )
        return f"{self.database}: emptied the CJ tables; rows removed: {removed}"


def check_reset_allowed(database: Database, env: Mapping[str, str]) -> None:
    """Raise Refused unless `database` is a dev or test target (see the module docstring)."""
    environment = env.get("CJ_ENVIRONMENT", "").strip().lower()
    if environment in PROTECTED_ENVIRONMENTS:
        raise Refused(
            f"refusing to reset {database.display}: CJ_ENVIRONMENT is {environment}; "
            "reset is for dev and test databases only"
        )
    if database.embedded:
        return
    if database.dbname.endswith(DEV_NAME_SUFFIXES) or environment in DEV_ENVIRONMENTS:
        return
    raise Refused(
        f"refusing to reset {database.display}: not a dev or test database (its name does not "
        "end in _dev or _test, and CJ_ENVIRONMENT is not dev or test)"
    )


def reset(
    database: Database, *, drop: bool = False, env: Mapping[str, str] = os.environ
) -> ResetResult:
    """Empty the CJ tables (or drop and recreate them with `drop=True`) after the guard.

    Either way it is one transaction: a failure leaves the tables as they were."""
    check_reset_allowed(database, env)
    schema = source_schema()
    result = ResetResult(database=database.display, dropped=drop)
    with connect(database) as conn, conn.transaction():
        missing = [table for table in SERVICE_TABLES if not table_exists(conn, schema, table)]
        if missing and not drop:
            raise CjHealthError(
                f"{database.display} has no CJ table(s) {', '.join(missing)}; run "
                "`cj-health db init`, or `cj-health eng5 reset --drop` to recreate them"
            )
        for table in SERVICE_TABLES:
            if table not in missing:
                result.rows_removed[table] = conn.execute(
                    sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))
                ).fetchone()[0]
        if drop:
            _drop_tables(conn, schema)
            result.applied_migrations = apply_migrations(conn).applied
        else:
            conn.execute(
                sql.SQL("truncate {} restart identity").format(
                    sql.SQL(", ").join(sql.Identifier(schema, t) for t in SERVICE_TABLES)
                )
            )
    return result


def _drop_tables(conn, schema: str) -> None:
    """Drop the service tables, their enum types and the migration ledger. Monitoring views
    built on them (dbt) go too: rebuild them with `cj-health build`."""
    tables = [sql.Identifier(schema, table) for table in (*SERVICE_TABLES, LEDGER_TABLE)]
    conn.execute(sql.SQL("drop table if exists {} cascade").format(sql.SQL(", ").join(tables)))
    types = [sql.Identifier(schema, name) for name in ENUM_TYPES]
    conn.execute(sql.SQL("drop type if exists {} cascade").format(sql.SQL(", ").join(types)))
