"""Fixtures: every test gets databases of its own on the server under test, dropped afterwards.

The server under test is CJ_TEST_ADMIN_URL (PostgreSQL 15 in CI) or, when unset, the embedded
server. `make test` runs the suite once against each. Tests never touch a database they did
not create: every database here is named `cjt_<random>` and dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from psycopg import sql

from cj_health import db as cj_db_module
from cj_health import embedded
from cj_health.db import Database, connect
from cj_health.schema import init_schema

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def _admin() -> Database:
    url = os.environ.get("CJ_TEST_ADMIN_URL", "").strip()
    if url:
        return cj_db_module.parse_url(url)
    return Database(embedded.server_url("postgres"), embedded=True)


@pytest.fixture(scope="session")
def admin_db() -> Database:
    return _admin()


def _create(admin: Database, template: str | None = None) -> Database:
    name = f"cjt_{uuid.uuid4().hex[:12]}"
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
    """`cj_db`, also named by CJ_DATABASE_URL so that CLI functions use it."""
    monkeypatch.setenv("CJ_DATABASE_URL", cj_db.url)
    return cj_db
