"""The target: one value saying which database every part of a command talks to.

A libpq URL is only a claim. Without a database name, libpq asks for PGDATABASE, not the name
a reader of the URL would guess; without a port it takes PGPORT, and a PGSERVICE file may name
another host. So the target is resolved once, on an open connection:

- `database`: the URL with host (a unix socket's directory), port, user and database pinned
  to what libpq used (`conn.info`) and the server reports (`current_database()`), so dbt, GX,
  python_fix and `db env`/`db where` reach exactly that server and database, whatever the
  PG* variables or a service file would make of the URL;
- `dbname` and `server_version`: read from the server, never guessed;
- `source_schema` and `monitoring_schema`: CJ_SOURCE_SCHEMA and CJ_MONITORING_SCHEMA,
  validated as plain identifiers (else exit 2 naming the variable).

Every consumer derives its connection from it: `conninfo` (psycopg and python_fix, with
search_path set to the source schema), `dbt_env` (profiles/profiles.yml) and `sqlalchemy_url`
(Great Expectations).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from psycopg import conninfo as pg_conninfo

from cj_health.db import (
    Database,
    connect,
    dbt_env,
    monitoring_schema,
    pinned_url,
    resolve_database,
    session_conninfo,
    source_schema,
)


@dataclass(frozen=True)
class Target:
    """A verified target database (see the module docstring)."""

    database: Database
    dbname: str
    server_version: int
    source_schema: str
    monitoring_schema: str

    @property
    def embedded(self) -> bool:
        return self.database.embedded

    @property
    def display(self) -> str:
        """Host, port and verified database name, never the password."""
        return self.database.display

    @property
    def conninfo(self) -> str:
        """libpq conninfo with search_path set to the source schema (psycopg, python_fix)."""
        return session_conninfo(self.database)

    @property
    def dbt_env(self) -> dict[str, str]:
        """The variables profiles/profiles.yml reads (holds the password: children only)."""
        return dbt_env(self.database)

    @property
    def sqlalchemy_url(self) -> str:
        """A `postgresql+psycopg://` URL for Great Expectations (holds the password)."""
        from cj_health.gx.connection import sqlalchemy_url

        return sqlalchemy_url(self.database)


def verify(database: Database, env: Mapping[str, str] | None = None) -> Target:
    """Connect to `database` and pin it to the server libpq reached and the database the
    server says it is (module docstring)."""
    schemas = (source_schema(env), monitoring_schema(env))  # validated before connecting
    with connect(database, autocommit=True) as conn:
        dbname, version = conn.execute(
            "select current_database(), current_setting('server_version_num')::int"
        ).fetchone()
        url = pg_conninfo.make_conninfo(pinned_url(database.url, conn.info), dbname=dbname)
    return Target(Database(url, database.embedded), dbname, version, *schemas)


def resolve_target(env: Mapping[str, str] | None = None) -> Target:
    """CJ_DATABASE_URL (else the embedded server's dev database), verified."""
    source_schema(env)
    monitoring_schema(env)
    return verify(resolve_database(env), env)
