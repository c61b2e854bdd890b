"""`cj-health eng5 reset`: empty the CJ tables of a dev or test database, or drop and recreate
them (the recreate-and-reseed routine: no backfill).

The guard (cj_health.guard.dev_only) is checked on the database actually connected before
anything is touched; a refusal raises `Refused` (exit 3) and changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from psycopg import sql

from cj_health.acknowledgements import forget_all
from cj_health.db import Database, connect, source_schema
from cj_health.errors import CjHealthError
from cj_health.guard import dev_only, judge_dev_target
from cj_health.history import close_all_incidents
from cj_health.schema import LEDGER_TABLE, SERVICE_TABLES, apply_migrations, table_exists
from cj_health.target import verify

ENUM_TYPES = ("cj_batch_status_enum", "cj_batch_state_enum")


@dataclass
class ResetResult:
    database: str
    dropped: bool
    rows_removed: dict[str, int] = field(default_factory=dict)
    applied_migrations: list[str] = field(default_factory=list)
    acknowledgements_removed: int = 0
    incidents_cleared: int = 0

    def summary(self) -> str:
        removed = ", ".join(f"{table} {count}" for table, count in self.rows_removed.items())
        if self.acknowledgements_removed or self.incidents_cleared:
            removed += (
                f"; acknowledgements removed {self.acknowledgements_removed},"
                f" open incidents cleared {self.incidents_cleared}"
            )
        if self.dropped:
            return (
                f"{self.database}: dropped and recreated the CJ tables "
                f"({', '.join(self.applied_migrations)}); rows removed: {removed}"
            )
        return f"{self.database}: emptied the CJ tables; rows removed: {removed}"


def check_reset_allowed(database: Database, env: Mapping[str, str]) -> None:
    """Raise Refused unless `database`, by the name it claims, may be reset; `reset` itself
    judges the name the server reports (cj_health.guard)."""
    judge_dev_target(
        "reset", database.dbname, embedded=database.embedded, display=database.display, env=env
    )


def reset(
    database: Database, *, drop: bool = False, env: Mapping[str, str] = os.environ
) -> ResetResult:
    """Empty the CJ tables (or drop and recreate them with `drop=True`) after the guard.

    Either way the CJ batch ids start again at 1, so the acknowledgements go and the open
    incidents are cleared in the same transaction: a new batch given a reused id must not
    inherit the old batch's (cj_health.acknowledgements, cj_health.history).

    Either way it is one transaction: a failure leaves the tables as they were."""
    target = dev_only(verify(database, env), "reset", env)
    database = target.database
    schema = source_schema(env)
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
        result.acknowledgements_removed = forget_all(conn)
        result.incidents_cleared = close_all_incidents(conn)
    return result


def _drop_tables(conn, schema: str) -> None:
    """Drop the service tables, their enum types and the migration ledger. Monitoring views
    built on them (dbt) go too: rebuild them with `cj-health build`."""
    tables = [sql.Identifier(schema, table) for table in (*SERVICE_TABLES, LEDGER_TABLE)]
    conn.execute(sql.SQL("drop table if exists {} cascade").format(sql.SQL(", ").join(tables)))
    types = [sql.Identifier(schema, name) for name in ENUM_TYPES]
    conn.execute(sql.SQL("drop type if exists {} cascade").format(sql.SQL(", ").join(types)))
