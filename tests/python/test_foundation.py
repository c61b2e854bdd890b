"""The foundation: schema migrations, database resolution, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import load_production_head
from psycopg.conninfo import make_conninfo

from cj_health.db import Database, connect, parse_url
from cj_health.errors import DatabaseUnavailable
from cj_health.schema import LEDGER_TABLE, SERVICE_TABLES, init_schema, load_migrations

SNAPSHOT_SQL = """
select 'column' as kind, table_name || '.' || column_name
       || ':' || data_type || ':' || is_nullable || ':' || coalesce(column_default, '') as item
from information_schema.columns where table_schema = 'public'
union all
select 'index', indexname || ':' || indexdef from pg_indexes where schemaname = 'public'
union all
select 'constraint', conname || ':' || pg_get_constraintdef(oid)
from pg_constraint where connamespace = 'public'::regnamespace
union all
select 'type', t.typname || ':' || string_agg(e.enumlabel, ',' order by e.enumsortorder)
from pg_type t join pg_enum e on e.enumtypid = t.oid group by t.typname
union all
select 'ledger', version || ':' || checksum from public.cj_health_schema_migrations
order by 1, 2
"""


def snapshot(database: Database) -> list[tuple[str, str]]:
    with connect(database) as conn:
        return conn.execute(SNAPSHOT_SQL).fetchall()


def test_server_under_test_is_postgres_15_or_newer(admin_db: Database) -> None:
    with connect(admin_db) as conn:
        version = conn.execute("show server_version_num").fetchone()[0]
    assert int(version) >= 150000
    if os.environ.get("CJ_TEST_ADMIN_URL"):
        print(f"server under test: PostgreSQL {version}")


def test_init_creates_every_service_table_and_a_second_run_changes_nothing(empty_db) -> None:
    first = init_schema(empty_db)
    assert first.applied == [f"{m.version}_{m.name}" for m in load_migrations()]
    before = snapshot(empty_db)
    tables = {row[1].split(".")[0] for row in before if row[0] == "column"}
    assert set(SERVICE_TABLES) | {LEDGER_TABLE} == tables

    second = init_schema(empty_db)
    assert second.applied == []
    assert snapshot(empty_db) == before


def test_schema_keeps_the_service_types(cj_db: Database) -> None:
    with connect(cj_db) as conn:
        types = dict(
            conn.execute(
                """select table_name || '.' || column_name, data_type
                   from information_schema.columns where table_schema = 'public'"""
            ).fetchall()
        )
        delete_rules = dict(
            conn.execute(
                """select tc.table_name || '.' || kcu.column_name, rc.delete_rule
                   from information_schema.referential_constraints rc
                   join information_schema.table_constraints tc
                     on tc.constraint_name = rc.constraint_name
                   join information_schema.key_column_usage kcu
                     on kcu.constraint_name = rc.constraint_name"""
            ).fetchall()
        )
        outbox_index = conn.execute(
            """select indexdef from pg_indexes
               where tablename = 'event_outbox' and indexdef like '%%UNIQUE%%aggregate_id%%'"""
        ).fetchone()
    # JSON, not JSONB; timestamps with and without time zone as the service has them.
    assert types["cj_batch_uploads.processing_metadata"] == "json"
    assert types["event_outbox.event_data"] == "json"
    assert types["cj_batch_uploads.created_at"] == "timestamp without time zone"
    assert types["cj_batch_states.last_activity_at"] == "timestamp with time zone"
    assert types["cj_batch_uploads.status"] == "USER-DEFINED"
    assert types["cj_comparison_pairs.request_correlation_id"] == "uuid"
    assert delete_rules["cj_batch_states.batch_id"] == "CASCADE"
    # grade_projections keeps its rows: its foreign keys have no ON DELETE since 2025-11-12.
    assert delete_rules["grade_projections.els_essay_id"] == "NO ACTION"
    assert delete_rules["cj_comparison_pairs.essay_a_els_id"] == "NO ACTION"
    assert outbox_index is not None and "WHERE (published_at IS NULL)" in outbox_index[0]


def test_init_on_an_existing_service_database_creates_nothing(empty_db: Database) -> None:
    # A service database: production's tables, created by the service, without our ledger.
    load_production_head(empty_db)
    before = snapshot_without_ledger(empty_db)
    result = init_schema(empty_db)
    assert result.existing_service_schema
    assert "created nothing" in result.summary(empty_db.display)
    assert snapshot_without_ledger(empty_db) == before


def snapshot_without_ledger(database: Database) -> list[tuple]:
    with connect(database) as conn:
        return conn.execute(
            """select table_name, column_name from information_schema.columns
               where table_schema = 'public' order by 1, 2"""
        ).fetchall()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cj_health.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql://cj:s3cr3t-pw@127.0.0.1:1/cj_dev", "127.0.0.1:1/cj_dev"),
        ("postgresql://cj:s3cr3t-pw@no-such-host.invalid:5432/cj_dev", "no-such-host.invalid"),
        ("postgresql://cj:s3cr3t-pw@[::1/cj_dev", "not a valid libpq URL"),
        ("host=127.0.0.1 port=nope password=s3cr3t-pw", "invalid integer value \"nope\""),
    ],
)
def test_bad_database_url_is_one_line_exit_2_without_password(url: str, named: str) -> None:
    proc = run_cli("db", "init", env={"CJ_DATABASE_URL": url})
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert named in lines[0]
    assert "Traceback" not in proc.stderr
    assert "s3cr3t-pw" not in proc.stderr


def test_a_missing_database_is_named(admin_db: Database) -> None:
    missing = admin_db.with_dbname("cjt_does_not_exist")
    with pytest.raises(DatabaseUnavailable, match="cjt_does_not_exist"):
        connect(missing)


def test_db_env_exports_the_profile_without_the_password(cj_db: Database) -> None:
    with_password = parse_url(make_conninfo(cj_db.url, password="pw-xyz"))
    proc = run_cli("db", "env", env={"CJ_DATABASE_URL": with_password.url})
    assert proc.returncode == 0, proc.stderr
    assert f"export CJ_PGDATABASE={cj_db.dbname}" in proc.stdout
    assert "pw-xyz" not in proc.stdout + proc.stderr
    assert "password is not printed" in proc.stdout
