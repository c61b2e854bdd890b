"""cj_health_reader, Grafana's role, against the real server: it reads the two monitoring views
and nothing else, never the service tables (above all not the student writing in
`cj_processed_essays.assessment_input_text`), and writes nothing.

Each test connects as a fresh LOGIN role granted cj_health_reader, the way Grafana's user is
set up in docs/runbook.md, on a database the ENG5 runner built and dbt monitored.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors, sql
from reader_support import (
    MONITORING_RELATIONS,
    READER_ROLE,
    MonitoredDatabase,
    monitored_database,
    reader_login,
)

from cj_health.build import refresh
from cj_health.db import Database, connect, monitoring_schema, source_schema
from cj_health.monitoring_tables import MONITORING_TABLES
from cj_health.schema import SERVICE_TABLES

WRITE_PRIVILEGES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
DROP_KIND = {"m": "materialized view", "v": "view", "r": "table"}


@pytest.fixture(scope="module")
def monitored(admin_db, schema_template, tmp_path_factory) -> Iterator[MonitoredDatabase]:
    with monitored_database(admin_db, schema_template, tmp_path_factory.mktemp("eng5")) as built:
        yield built


@pytest.fixture
def reader(monitored: MonitoredDatabase) -> Iterator[Database]:
    with reader_login(monitored.database) as login:
        yield login


def _refused(reader: Database, statement: sql.Composable | str) -> psycopg.Error:
    """Run `statement` as the reader; return the error it must raise."""
    with connect(reader, autocommit=True) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute(statement)
    return caught.value


def _qualified(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def test_reader_role_exists_and_cannot_log_in(monitored):
    with connect(monitored.database) as conn:
        row = conn.execute(
            "select rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls"
            " from pg_roles where rolname = %s",
            (READER_ROLE,),
        ).fetchone()
    assert row == (False, False, False, False, False)


def test_reader_selects_the_monitoring_views(reader, monitored):
    with connect(reader) as conn:
        health = conn.execute(
            sql.SQL("select cj_batch_id, health_status from {}").format(
                _qualified(monitoring_schema(), "cj_batch_health")
            )
        ).fetchall()
        alerts = conn.execute(
            sql.SQL("select cj_batch_id, issue from {}").format(
                _qualified(monitoring_schema(), "cj_batch_alerts")
            )
        ).fetchall()
        codes = conn.execute(
            sql.SQL("select problem_code from {}").format(
                _qualified(monitoring_schema(), "cj_problem_codes")
            )
        ).fetchall()
    assert {row[0] for row in health} == {*monitored.healthy_batch_ids, monitored.incident_batch_id}
    assert (monitored.incident_batch_id, "STUCK_FINALIZATION") in alerts
    assert ("STUCK_FINALIZATION",) in codes


@pytest.mark.parametrize("table", MONITORING_TABLES)
def test_reader_selects_the_monitoring_tables(reader, table):
    with connect(reader) as conn:
        conn.execute(
            sql.SQL("select * from {} limit 1").format(_qualified(monitoring_schema(), table))
        ).fetchall()


@pytest.mark.parametrize("table", SERVICE_TABLES)
def test_reader_cannot_read_the_service_tables(reader, table):
    error = _refused(
        reader, sql.SQL("select * from {} limit 1").format(_qualified(source_schema(), table))
    )
    assert isinstance(error, errors.InsufficientPrivilege), error


def test_reader_cannot_read_the_student_writing(reader, monitored):
    error = _refused(
        reader,
        sql.SQL("select assessment_input_text from {}").format(
            _qualified(source_schema(), "cj_processed_essays")
        ),
    )
    assert isinstance(error, errors.InsufficientPrivilege)
    with connect(monitored.database) as conn:
        allowed = conn.execute(
            "select has_column_privilege(%s, %s, 'assessment_input_text', 'SELECT')",
            (READER_ROLE, f"{source_schema()}.cj_processed_essays"),
        ).fetchone()[0]
    assert allowed is False


def _other_relations(database: Database) -> list[tuple[str, str]]:
    """Every table, view and materialized view outside the system schemas, except the two
    monitoring views."""
    with connect(database) as conn:
        rows = conn.execute(
            """
            select n.nspname, c.relname
            from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.relkind in ('r', 'v', 'm', 'p', 'f')
              and n.nspname not in ('pg_catalog', 'information_schema')
              and n.nspname not like 'pg\\_%%'
              and not (n.nspname = %s and c.relname = any(%s))
            order by 1, 2
            """,
            (monitoring_schema(), list(MONITORING_RELATIONS)),
        ).fetchall()
    return [(schema, name) for schema, name in rows]


def test_reader_reads_nothing_else_in_any_schema(reader, monitored):
    others = _other_relations(monitored.database)
    names = {name for _, name in others}
    # Not vacuous: the staging views over the service tables are among them.
    assert {"stg_cj__processed_essays", *SERVICE_TABLES} <= names
    readable = []
    for schema, name in others:
        statement = sql.SQL("select 1 from {} limit 0").format(_qualified(schema, name))
        with connect(reader, autocommit=True) as conn:
            try:
                conn.execute(statement)
                readable.append(f"{schema}.{name}")
            except errors.InsufficientPrivilege:
                pass
    assert readable == []


# One column per table, for the UPDATE.
WRITABLE_COLUMN = {
    "cj_batch_uploads": "status",
    "cj_processed_essays": "is_anchor",
    "grade_projections": "primary_grade",
}


@pytest.mark.parametrize(
    "template",
    [
        "insert into {table} default values",
        "update {table} set {column} = {column}",
        "delete from {table}",
        "truncate {table}",
    ],
    ids=["insert", "update", "delete", "truncate"],
)
@pytest.mark.parametrize("table", sorted(WRITABLE_COLUMN))
def test_reader_cannot_write_the_service_tables(reader, template, table):
    statement = sql.SQL(template).format(
        table=_qualified(source_schema(), table),
        column=sql.Identifier(WRITABLE_COLUMN[table]),
    )
    error = _refused(reader, statement)
    assert isinstance(error, errors.InsufficientPrivilege), error


@pytest.mark.parametrize("view", MONITORING_RELATIONS)
def test_reader_cannot_change_the_monitoring_views(reader, monitored, view):
    with connect(monitored.database) as conn:
        held = conn.execute(
            "select p from unnest(%s::text[]) as p where has_table_privilege(%s, %s, p)",
            (list(WRITE_PRIVILEGES), READER_ROLE, f"{monitoring_schema()}.{view}"),
        ).fetchall()
        before = conn.execute(
            sql.SQL("select count(*) from {}").format(_qualified(monitoring_schema(), view))
        ).fetchone()[0]
        relkind = conn.execute(
            "select relkind from pg_class where oid = %s::regclass",
            (f"{monitoring_schema()}.{view}",),
        ).fetchone()[0]
    assert held == [], f"{READER_ROLE} holds {held} on {view}"
    # A view that is not auto-updatable is refused before privileges are checked; either way
    # nothing changes.
    error = _refused(
        reader, sql.SQL("delete from {}").format(_qualified(monitoring_schema(), view))
    )
    assert isinstance(error, (errors.InsufficientPrivilege, errors.ObjectNotInPrerequisiteState))
    error = _refused(
        reader,
        sql.SQL("drop " + DROP_KIND[relkind] + " {}").format(
            _qualified(monitoring_schema(), view)
        ),
    )
    assert isinstance(error, errors.InsufficientPrivilege), error
    with connect(monitored.database) as conn:
        after = conn.execute(
            sql.SQL("select count(*) from {}").format(_qualified(monitoring_schema(), view))
        ).fetchone()[0]
    assert after == before


def test_reader_keeps_reading_after_the_scheduled_refresh(monitored):
    refresh(monitored.database)  # what the every-minute schedule runs (as the view's owner)
    with reader_login(monitored.database) as login, connect(login) as conn:
        rows = conn.execute(
            sql.SQL("select count(*) from {}").format(
                _qualified(monitoring_schema(), "cj_batch_health")
            )
        ).fetchone()
    assert rows == (len(monitored.healthy_batch_ids) + 1,)


def test_reader_cannot_refresh_the_health_view(reader):
    for concurrently in ("", "concurrently "):
        error = _refused(
            reader,
            sql.SQL("refresh materialized view " + concurrently + "{}").format(
                _qualified(monitoring_schema(), "cj_batch_health")
            ),
        )
        assert isinstance(error, errors.InsufficientPrivilege), error


@pytest.mark.parametrize("schema_of", [monitoring_schema, source_schema])
def test_reader_cannot_create_objects(reader, schema_of):
    error = _refused(
        reader,
        sql.SQL("create table {} (x int)").format(_qualified(schema_of(), "cjt_reader_probe")),
    )
    assert isinstance(error, errors.InsufficientPrivilege), error
    error = _refused(reader, "create schema cjt_reader_probe")
    assert isinstance(error, errors.InsufficientPrivilege), error
