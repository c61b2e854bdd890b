"""The monitoring views never vanish: a build that changes a staging column's type, which
`create or replace view` cannot apply, retires the old relations instead of dropping them, so
a reader querying cj_batch_health and cj_batch_alerts throughout sees no "does not exist";
and a build killed at any moment leaves the previous views queryable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from test_dbt_build import copy_project, dbt_run, insert_batch

from cj_health.db import Database, connect, monitoring_schema
from cj_health.dbt_runner import run_dbt

MARTS = ("cj_batch_health", "cj_batch_alerts")
STAGING = "models/staging/stg_cj__batch_states.sql"


@pytest.fixture
def built(cj_db: Database) -> Database:
    with connect(cj_db) as conn:
        insert_batch(conn)
        conn.commit()
    dbt_run(cj_db)
    return cj_db


def change_staging_column_type(tmp_path: Path) -> Path:
    """A copy of the project whose staging model yields cj_state as varchar, not text: a type
    change that reaches the materialized view through int_batch_facts and int_batch_health."""
    project = copy_project(tmp_path)
    staging = project / STAGING
    text = staging.read_text()
    assert "state::text as cj_state" in text
    staging.write_text(text.replace("state::text as cj_state", "state::varchar(40) as cj_state"))
    return project


def column_type(conn: psycopg.Connection, relation: str, column: str) -> str:
    return conn.execute(
        "select format_type(a.atttypid, a.atttypmod) from pg_attribute a"
        " where a.attrelid = %s::regclass and a.attname = %s",
        (f"{monitoring_schema()}.{relation}", column),
    ).fetchone()[0]


def retired_relations(conn: psycopg.Connection) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = %s and c.relname like %s",
            (monitoring_schema(), "%\\_\\_cj\\_retired\\_%"),
        )
    ]


def read_marts(conn: psycopg.Connection) -> None:
    for view in MARTS:
        conn.execute(
            sql.SQL("select count(*) from {}").format(sql.Identifier(monitoring_schema(), view))
        ).fetchone()


def test_readers_see_the_views_throughout_a_build_that_changes_a_column_type(
    built, tmp_path, monkeypatch
) -> None:
    database = built
    monkeypatch.setenv("CJ_HEALTH_PROJECT_DIR", str(change_staging_column_type(tmp_path)))
    errors: list[str] = []
    reads = 0
    done = threading.Event()

    def read_loop() -> None:
        nonlocal reads
        with connect(database, autocommit=True) as conn:
            while not done.is_set():
                try:
                    read_marts(conn)
                    reads += 1
                except psycopg.Error as exc:
                    errors.append(str(exc).splitlines()[0])
                done.wait(0.01)

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        dbt_run(database)
    finally:
        done.set()
        reader.join()
    assert reads > 0
    assert errors == []
    with connect(database) as conn:
        # the change did reach the health view, and nothing retired is left behind
        assert column_type(conn, "cj_batch_health", "cj_state") == "character varying(40)"
        assert retired_relations(conn) == []
        for view in MARTS:  # the reader keeps its grant on the new relations
            assert conn.execute(
                "select has_table_privilege('cj_health_reader', %s, 'select')",
                (f"{monitoring_schema()}.{view}",),
            ).fetchone()[0]


def _dbt_command(project: Path, target: Path) -> list[str]:
    dbt = str(Path(sys.executable).with_name("dbt"))
    return [
        dbt, "build", "--exclude-resource-type", "test", "--exclude-resource-type",
        "unit_test", "--project-dir", str(project), "--profiles-dir",
        str(project / "profiles"), "--target-path", str(target), "--log-path", str(target),
    ]


@pytest.mark.parametrize("kill_after_lines", [3, 6, 10, 14])
def test_a_build_killed_at_any_moment_leaves_the_views_queryable(
    built, tmp_path, monkeypatch, kill_after_lines
) -> None:
    """dbt is SIGKILLed after its n-th "OK"/"START" line of a build that changes a staging
    column type: the marts are still there, and the next full build cleans up."""
    from cj_health.db import dbt_env

    database = built
    project = change_staging_column_type(tmp_path)
    env = {**os.environ, **dbt_env(database), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    proc = subprocess.Popen(
        _dbt_command(project, tmp_path / "target"),
        env=env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if " START " in line or " OK " in line:
            seen += 1
        if seen >= kill_after_lines:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    with connect(database, autocommit=True) as conn:
        read_marts(conn)

    monkeypatch.setenv("CJ_HEALTH_PROJECT_DIR", str(project))
    dbt_run(database)
    with connect(database) as conn:
        read_marts(conn)
        assert column_type(conn, "cj_batch_health", "cj_state") == "character varying(40)"
        assert retired_relations(conn) == []


def test_a_retired_relation_still_read_is_kept(built, tmp_path, monkeypatch) -> None:
    """Only the staging model runs (a partial run): the intermediate views still read the
    retired staging view, so the cleanup keeps it, and the marts still answer."""
    database = built
    project = change_staging_column_type(tmp_path)
    monkeypatch.setenv("CJ_HEALTH_PROJECT_DIR", str(project))
    result = run_dbt(database, ["run", "--select", "stg_cj__batch_states"])
    assert result.ok, result.output[-2000:]
    with connect(database) as conn:
        read_marts(conn)
        assert any(name.startswith("stg_cj__batch_states__") for name in retired_relations(conn))
    dbt_run(database)
    with connect(database) as conn:
        assert retired_relations(conn) == []
