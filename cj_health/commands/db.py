"""`cj-health db init|stop|env|url`: the target database and its schema."""

from __future__ import annotations

import argparse
import shlex

from cj_health import embedded
from cj_health.db import (
    LIBPQ_ENVIRONMENT,
    configured_database,
    dbt_env,
    ensure_database_exists,
)
from cj_health.errors import CjHealthError
from cj_health.schema import init_schema
from cj_health.target import resolve_target, verify


def register(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="the target database: schema, embedded server, env")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("init", help="create the CJ service schema (migrations)").set_defaults(
        handler=cmd_init
    )
    db_sub.add_parser("stop", help="stop the embedded PostgreSQL server").set_defaults(
        handler=cmd_stop
    )
    db_sub.add_parser(
        "env", help="print shell exports for plain `dbt`: eval \"$(cj-health db env)\""
    ).set_defaults(handler=cmd_env)
    db_sub.add_parser("where", help="print which database is the target").set_defaults(
        handler=cmd_where
    )


def cmd_init(args: argparse.Namespace) -> int:
    database = resolve_target().database
    print(init_schema(database).summary(database.display))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    if embedded.stop():
        print(f"stopped the embedded PostgreSQL server ({embedded.pgdata_dir()})")
    else:
        print("the embedded PostgreSQL server is not running")
    return 0


PINNED_PG_VARIABLES = ("HOST", "PORT", "USER", "DATABASE")


def env_exports() -> list[str]:
    """Shell lines exporting the dbt profile's variables and libpq's PG* variables for the
    verified database, and unsetting libpq's other connection variables. The
    password is never printed: when the URL holds one, export CJ_PGPASSWORD yourself or use
    ~/.pgpass. Starts no server: with the embedded one stopped, it says so (exit 2)."""
    database = configured_database()
    if database is None:
        raise CjHealthError(_EMBEDDED_STOPPED)
    if database.embedded:  # running: its dev database may not be created yet
        ensure_database_exists(database.with_dbname("postgres"), database.dbname)
    values = dbt_env(verify(database).database)
    has_password = bool(values.pop("CJ_PGPASSWORD"))
    # psql and every other libpq client reach the same database: the PG* variables name it,
    # and those of libpq's connection variables the target did not pin are unset (a
    # leftover PGSERVICE or PGHOSTADDR would otherwise win over PGHOST).
    values.update({f"PG{key}": values[f"CJ_PG{key}"] for key in PINNED_PG_VARIABLES})
    stale = sorted((set(LIBPQ_ENVIRONMENT.values()) | {"PGSERVICEFILE"}) - set(values))
    lines = [f"export {key}={shlex.quote(value)}" for key, value in values.items()]
    lines.append(f"export DBT_PROFILES_DIR={shlex.quote(str(_profiles_dir()))}")
    lines.append(f"unset {' '.join(stale)}")
    if has_password:
        lines.append("# the password is not printed: export CJ_PGPASSWORD or use ~/.pgpass")
    return lines


def _profiles_dir():
    from cj_health.paths import project_dir

    return project_dir() / "profiles"


def cmd_env(args: argparse.Namespace) -> int:
    print("\n".join(env_exports()))
    return 0


def cmd_where(args: argparse.Namespace) -> int:
    """The verified target (current_database()); starts no server."""
    database = configured_database()
    if database is None:
        print(f"embedded {embedded.pgdata_dir()}/{embedded.EMBEDDED_DATABASE} (not running)")
        return 0
    print(verify(database).display)
    return 0


_EMBEDDED_STOPPED = (
    "the embedded PostgreSQL server is not running and `db env` does not start it; "
    "run `cj-health db init` (or any command that uses the database) first"
)
