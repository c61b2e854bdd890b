"""Fixtures: every test gets databases of its own on the server under test, dropped afterwards.

The server under test is CJ_TEST_ADMIN_URL (PostgreSQL 15 in CI) or, when unset, the embedded
server. `make test` runs the suite once against each. Tests never touch a database they did
not create: every database here is named `cjt_<random>` and dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from cj_health import db as cj_db_module
from cj_health import embedded
from cj_health.db import Database, connect
from cj_health.schema import init_schema

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture(autouse=True)
def _unit_tests_open_no_connection(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test marked `unit` is pure logic: opening a database connection fails it (the
    `make test-unit` layer runs with no server at all)."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test marked unit opened a database connection")

    monkeypatch.setattr(psycopg, "connect", refuse)
    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(refuse))


def _admin() -> Database:
    url = os.environ.get("CJ_TEST_ADMIN_URL", "").strip()
    if url:
        return cj_db_module.parse_url(url)
    return Database(embedded.server_url("postgres"), embedded=True)


@pytest.fixture(scope="session")
def admin_db() -> Database:
    return _admin()


def _create(admin: Database, template: str | None = None, name: str | None = None) -> Database:
    name = name or f"cjt_{uuid.uuid4().hex[:12]}"
    with connect(admin, autocommit=True) as conn:
        statement = sql.SQL("create database {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" template {}").format(sql.Identifier(template))
        conn.execute(statement)
    return admin.with_dbname(name)


def _drop(admin: Database, name: str) -> None:
    with connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def schema_template(admin_db: Database) -> Iterator[str]:
    """A database holding the migrated CJ schema, cloned for each test that needs one."""
    template = _create(admin_db)
    init_schema(template)
    yield template.dbname
    _drop(admin_db, template.dbname)


@pytest.fixture
def make_database(admin_db: Database) -> Iterator:
    """Factory: make_database(template=None) -> a new Database, dropped after the test."""
    created: list[str] = []

    def factory(template: str | None = None) -> Database:
        database = _create(admin_db, template)
        created.append(database.dbname)
        return database

    yield factory
    for name in created:
        _drop(admin_db, name)


@pytest.fixture
def empty_db(make_database) -> Database:
    """A new, empty database."""
    return make_database()


@pytest.fixture
def cj_db(make_database, schema_template: str) -> Database:
    """A new database with the CJ service schema and nothing in it."""
    return make_database(schema_template)


@pytest.fixture
def cj_env(cj_db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    """`cj_db`, also named by CJ_DATABASE_URL so that CLI functions use it, and declared a
    test database (CJ_ENVIRONMENT=test) so that the dev-data commands may write to it."""
    monkeypatch.setenv("CJ_DATABASE_URL", cj_db.url)
    monkeypatch.setenv("CJ_ENVIRONMENT", "test")
    return cj_db


@contextmanager
def cloned_database(
    admin: Database, template: str, name: str | None = None
) -> Iterator[Database]:
    """A new database copied from `template` (named `name`, default `cjt_<random>`), dropped
    afterwards: for module-scoped fixtures, and for a database that needs a name of its own."""
    database = _create(admin, template, name)
    try:
        yield database
    finally:
        _drop(admin, database.dbname)


@contextmanager
def eng5_template(
    admin: Database, seeds: Sequence[int], out_dir: Path
) -> Iterator[tuple[str, list[int]]]:
    """A database with the CJ schema and one healthy ENG5 batch per seed, for cloning with
    make_database(template=name); yields (name, batch ids) and drops it afterwards."""
    from cj_health.eng5.runner import execute_batch

    database = _create(admin)
    try:
        init_schema(database)
        ids = [
            execute_batch(database, seed=seed, out_dir=out_dir / str(seed)).cj_batch_id
            for seed in seeds
        ]
        yield database.dbname, ids
    finally:
        _drop(admin, database.dbname)


def table_fingerprint(database: Database, tables: Sequence[str]) -> dict[str, str]:
    """A fingerprint of every row of each table: equal fingerprints, unchanged rows."""
    with connect(database) as conn:
        return {
            table: conn.execute(
                sql.SQL(
                    "select count(*)::text || ':' || coalesce(md5(string_agg(t::text, "
                    "',' order by t::text)), '') from {} t"
                ).format(sql.Identifier(table))
            ).fetchone()[0]
            for table in tables
        }


PRODUCTION_HEAD = Path(__file__).parent / "fixtures" / "cj_service_head.sql"


def load_production_head(database: Database) -> None:
    """Create production's CJ schema at head in `database`, as the service's own migrations
    define it (not the project's): a service database the project did not create."""
    with connect(database) as conn, conn.transaction():
        conn.execute(PRODUCTION_HEAD.read_text())
