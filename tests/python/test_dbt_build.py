"""The dbt project on a real server: how cj_batch_health is maintained (concurrent refresh,
rebuilt when its definition changes), `cj-health build|refresh` and their exit codes, the
source schema as a setting, and `dbt docs generate` documenting every model and column.

What the view says about batches is test_health_view.py's subject.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from cj_health import cli
from cj_health.build import HEALTH_VIEW, build, refresh
from cj_health.db import Database, connect, monitoring_schema
from cj_health.dbt_runner import run_dbt
from cj_health.errors import CjHealthError
from cj_health.paths import PROJECT_FILES, project_dir
from cj_health.schema import init_schema


def dbt_run(database: Database, dbt_vars: dict | None = None) -> None:
    """The models and the seed, without tests (what `cj-health build` runs first)."""
    with tempfile.TemporaryDirectory() as target:
        result = run_dbt(
            database,
            [
                "build", "--exclude-resource-type", "test", "--exclude-resource-type",
                "unit_test", "--target-path", target, "--log-path", target,
            ],
            dbt_vars=dbt_vars,
        )
    assert result.ok, result.output[-3000:]


def insert_batch(
    conn: psycopg.Connection,
    *,
    status: str = "PERFORMING_COMPARISONS",
    state: str = "WAITING_CALLBACKS",
    idle: str = "1 minute",
) -> int:
    """A small batch by plain SQL: 2 anchors (column and metadata agree), 3 students."""
    cj_batch_id = conn.execute(
        "insert into cj_batch_uploads (bos_batch_id, event_correlation_id, language,"
        " course_code, expected_essay_count, status, assignment_id, updated_at)"
        " values (gen_random_uuid()::text, gen_random_uuid()::text, 'en', 'ENG5', 3,"
        " %s::cj_batch_status_enum, 'assignment-1',"
        " (now() - %s::interval) at time zone 'UTC') returning id",
        (status, idle),
    ).fetchone()[0]
    conn.execute(
        "insert into cj_batch_states (batch_id, state, total_comparisons, last_activity_at)"
        " values (%s, %s::cj_batch_state_enum, 0, now() - %s::interval)",
        (cj_batch_id, state, idle),
    )
    for n in range(5):
        anchor = n < 2
        conn.execute(
            "insert into cj_processed_essays (els_essay_id, cj_batch_id, comparison_count,"
            " is_anchor, processing_metadata, text_storage_id, assessment_input_text)"
            " values (%s, %s, 0, %s, %s::json, 'content-' || md5(random()::text),"
            " 'Student writing that must never leak.')",
            (
                f"{'ANCHOR' if anchor else 'E'}_{cj_batch_id}_{n}",
                cj_batch_id,
                anchor,
                json.dumps({"is_anchor": True} if anchor else {}),
            ),
        )
    return cj_batch_id


def view_oid(conn: psycopg.Connection) -> int:
    return conn.execute(
        "select c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relname = %s and c.relkind = 'm'",
        (monitoring_schema(), HEALTH_VIEW),
    ).fetchone()[0]


def view_comment(conn: psycopg.Connection) -> str:
    query = "select obj_description(%s::oid, 'pg_class')"
    return conn.execute(query, (view_oid(conn),)).fetchone()[0]


def health_row(conn: psycopg.Connection, cj_batch_id: int) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql.SQL("select * from {} where cj_batch_id = %s").format(
                sql.Identifier(monitoring_schema(), HEALTH_VIEW)
            ),
            (cj_batch_id,),
        ).fetchone()


def copy_project(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    for name in PROJECT_FILES:
        source = project_dir() / name
        if source.is_dir():
            shutil.copytree(source, copy / name)
        else:
            copy.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


@pytest.fixture
def monitored(cj_db: Database) -> tuple[Database, int]:
    """A database with one in-progress batch and the monitoring views built."""
    with connect(cj_db) as conn:
        cj_batch_id = insert_batch(conn)
        conn.commit()
    dbt_run(cj_db)
    return cj_db, cj_batch_id


def test_refresh_is_concurrent_and_does_not_wait_for_readers(monitored, monkeypatch) -> None:
    database, cj_batch_id = monitored
    with connect(database) as conn:
        oid = view_oid(conn)
        assert health_row(conn, cj_batch_id)["health_status"] == "IN_PROGRESS"
        conn.execute(
            "update cj_batch_states set last_activity_at = now() - interval '5 hours'"
            " where batch_id = %s",
            (cj_batch_id,),
        )
        conn.execute(
            "update cj_batch_uploads set updated_at = (now() - interval '5 hours')"
            " at time zone 'UTC' where id = %s",
            (cj_batch_id,),
        )
        conn.commit()

    # A reader in the middle of a transaction on the view holds its lock. A plain REFRESH
    # would need an exclusive lock and hit the lock timeout; a concurrent one does not wait.
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=5000")
    with connect(database) as reader:
        assert health_row(reader, cj_batch_id)["health_status"] == "IN_PROGRESS"
        result = refresh(database)
        assert result.concurrently
        row = health_row(reader, cj_batch_id)
    assert row["health_status"] == "STALLED"
    assert row["issues"] == ["STALLED"] and row["is_alerting"]
    assert (result.batches, result.alerting) == (1, 1)
    with connect(database) as conn:
        assert view_oid(conn) == oid  # refreshed in place, not rebuilt


def test_plain_refresh_would_be_blocked_by_the_same_reader(monitored, monkeypatch) -> None:
    """The counter-test of the one above: the reader's lock is real."""
    database, cj_batch_id = monitored
    with connect(database) as reader:
        health_row(reader, cj_batch_id)
        with connect(database, autocommit=True) as other:
            other.execute("set lock_timeout = '500ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute(
                    sql.SQL("refresh materialized view {}").format(
                        sql.Identifier(monitoring_schema(), HEALTH_VIEW)
                    )
                )


def test_refresh_of_a_never_populated_view_populates_it_plainly(monitored) -> None:
    database, cj_batch_id = monitored
    with connect(database, autocommit=True) as conn:
        conn.execute(
            sql.SQL("refresh materialized view {} with no data").format(
                sql.Identifier(monitoring_schema(), HEALTH_VIEW)
            )
        )
    first = refresh(database)
    second = refresh(database)
    assert (first.concurrently, second.concurrently) == (False, True)
    assert first.batches == second.batches == 1


def test_refresh_without_the_view_says_to_build_first(cj_env, capsys) -> None:
    with pytest.raises(CjHealthError, match="run `cj-health build` first"):
        refresh(cj_env)
    assert cli.main(["refresh"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cj-health: ") and "cj-health build" in err
    assert len(err.splitlines()) == 1


def test_cli_refresh_prints_what_it_did(monitored, monkeypatch, capsys) -> None:
    database, _ = monitored
    monkeypatch.setenv("CJ_DATABASE_URL", database.url)
    assert cli.main(["refresh"]) == 0
    out = capsys.readouterr().out
    assert "refreshed cj_monitoring.cj_batch_health concurrently" in out
    assert "1 batches, 0 alerting" in out


def test_dbt_run_refreshes_in_place_and_picks_up_changed_logic(monitored) -> None:
    database, cj_batch_id = monitored
    with connect(database) as conn:
        oid, comment = view_oid(conn), view_comment(conn)
    assert "definition-md5: " in comment
    assert comment.startswith("One row of health per CJ batch")

    # The verdict logic changes (a threshold var); the view's SQL does not. dbt replaces the
    # intermediate view in place and refreshes the materialized view, which then judges by
    # the new rule.
    dbt_run(database, {"stalled_after_minutes": 0})
    with connect(database) as conn:
        assert view_oid(conn) == oid
        assert view_comment(conn) == comment
        assert health_row(conn, cj_batch_id)["issues"] == ["STALLED"]

    dbt_run(database)
    with connect(database) as conn:
        assert view_oid(conn) == oid
        assert health_row(conn, cj_batch_id)["issues"] == []


def test_dbt_run_rebuilds_the_view_when_its_definition_changes(
    monitored, tmp_path, monkeypatch
) -> None:
    """dbt-core #8862: dbt would only refresh. The definition hash in the view's comment
    makes the next plain run rebuild it: for the view's own SQL, and for a column added to
    the model it selects * from."""
    database, cj_batch_id = monitored
    with connect(database) as conn:
        oid, comment = view_oid(conn), view_comment(conn)

    project = copy_project(tmp_path)
    monkeypatch.setenv("CJ_HEALTH_PROJECT_DIR", str(project))
    mart = project / "models/marts/cj_batch_health.sql"
    original = mart.read_text()
    selected = "select * from {{ ref('int_batch_health_joined_to_acknowledgements') }}"
    assert selected in original
    mart.write_text(original.replace(selected, selected.replace("*", "*, 42 as definition_probe")))
    dbt_run(database)
    with connect(database) as conn:
        rebuilt_oid, rebuilt_comment = view_oid(conn), view_comment(conn)
        assert health_row(conn, cj_batch_id)["definition_probe"] == 42
    assert rebuilt_oid != oid and rebuilt_comment != comment

    intermediate = project / "models/intermediate/int_batch_health_joined_to_acknowledgements.sql"
    original = intermediate.read_text()
    final_select = "\nselect * from acknowledged"
    assert original.count(final_select) == 1  # the final select: add a last column
    intermediate.write_text(
        original.replace(final_select, "\nselect *, 7 as appended_probe from acknowledged")
    )
    dbt_run(database)
    with connect(database) as conn:
        assert view_oid(conn) != rebuilt_oid
        row = health_row(conn, cj_batch_id)
        assert (row["appended_probe"], row["definition_probe"]) == (7, 42)

    monkeypatch.delenv("CJ_HEALTH_PROJECT_DIR")
    dbt_run(database)
    with connect(database) as conn:
        row = health_row(conn, cj_batch_id)
        assert "definition_probe" not in row and "appended_probe" not in row
        assert view_comment(conn) == comment  # back to the project's definition


def test_readers_can_query_during_a_dbt_run(monitored) -> None:
    """While `dbt run` works, the views stay there to be read (no drop-and-recreate)."""
    database, cj_batch_id = monitored
    errors: list[str] = []
    reads = 0
    done = threading.Event()

    def read_loop() -> None:
        nonlocal reads
        with connect(database, autocommit=True) as conn:
            while not done.is_set():
                try:
                    for view in ("cj_batch_health", "cj_batch_alerts"):
                        conn.execute(
                            sql.SQL("select count(*) from {}").format(
                                sql.Identifier(monitoring_schema(), view)
                            )
                        ).fetchone()
                    reads += 1
                except psycopg.Error as exc:
                    errors.append(str(exc).splitlines()[0])
                done.wait(0.05)

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        dbt_run(database)
    finally:
        done.set()
        reader.join()
    assert reads > 0
    assert errors == []


def test_build_refuses_a_threshold_that_is_not_a_number(monitored) -> None:
    database, _ = monitored
    result = build(database, dbt_vars={"stuck_after_minutes": "soon"})
    assert result.exit_code == 2
    assert result.test is None  # no test runs on models that did not build
    summary = result.summary()
    assert "int_batch_health" in summary
    assert "var stuck_after_minutes must be a number, got soon" in summary


def test_cli_build_exits_1_and_names_the_failing_invariant(cj_env, capsys) -> None:
    with connect(cj_env) as conn:
        insert_batch(conn)
        for _ in range(2):  # the table's unique constraint lets NULL assignments through
            conn.execute(
                "insert into anchor_essay_references (anchor_label, grade, grade_scale,"
                " text_storage_id) values ('anchor_x', 'B', 'eng5_np_legacy_9_step', 'content-x')"
            )
        conn.commit()
    assert cli.main(["build"]) == 1
    out = capsys.readouterr().out
    assert "tests: " in out and "0 broken" in out
    assert "FAIL assert_anchor_references_unique: 1 failing rows" in out
    assert "cj_monitoring_dbt_test__audit" in out
    failing = [line for line in out.splitlines() if line.strip().startswith("FAIL")]
    assert len(failing) == 1  # the batch itself is fine: in progress, nothing alerting


def test_the_source_schema_is_a_setting(make_database, monkeypatch) -> None:
    monkeypatch.setenv("CJ_SOURCE_SCHEMA", "cj_service")
    database = make_database()
    init_schema(database)
    with connect(database) as conn:
        conn.execute("set search_path to cj_service")
        cj_batch_id = insert_batch(conn)
        conn.commit()
    dbt_run(database)
    with connect(database) as conn:
        assert conn.execute("select to_regclass('public.cj_batch_uploads')").fetchone()[0] is None
        row = health_row(conn, cj_batch_id)
    assert (row["essay_count"], row["anchor_count"], row["student_count"]) == (5, 2, 3)


def test_docs_generate_documents_every_model_and_column(monitored) -> None:
    database, _ = monitored
    with tempfile.TemporaryDirectory() as target:
        result = run_dbt(
            database, ["docs", "generate", "--target-path", target, "--log-path", target]
        )
        assert result.ok, result.output[-3000:]
        manifest = json.loads((Path(target) / "manifest.json").read_text())
        catalog = json.loads((Path(target) / "catalog.json").read_text())
    ours = {
        unique_id: node
        for unique_id, node in manifest["nodes"].items()
        if node["package_name"] == "cj_batch_health" and node["resource_type"] in ("model", "seed")
    }
    marts = {"model.cj_batch_health.cj_batch_health", "model.cj_batch_health.cj_batch_alerts"}
    assert marts <= set(ours)
    undocumented = []
    for unique_id, node in ours.items():
        if not node["description"].strip():
            undocumented.append(unique_id)
        documented = {
            name for name, column in node["columns"].items() if column["description"].strip()
        }
        in_database = set(catalog["nodes"].get(unique_id, {}).get("columns", {}))
        assert in_database, f"{unique_id} is missing from the catalog"
        undocumented += [f"{unique_id}.{name}" for name in sorted(in_database - documented)]
    assert undocumented == []

    # The monitoring's own tables are sources, every column described, in the analysts'
    # exposure: what `dbt docs` shows them.
    monitoring = {
        unique_id: source
        for unique_id, source in manifest["sources"].items()
        if source["source_name"] == "cj_monitoring"
    }
    names = {source["name"] for source in monitoring.values()}
    assert {"cj_health_history", "cj_batch_incidents", "cj_monitoring_runs"} <= names
    for unique_id, source in monitoring.items():
        assert source["description"].strip(), unique_id
        in_database = set(catalog["sources"][unique_id]["columns"])
        documented = {
            name for name, column in source["columns"].items() if column["description"].strip()
        }
        assert in_database and in_database == documented, unique_id
    incident_columns = catalog["sources"]["source.cj_batch_health.cj_monitoring.cj_batch_incidents"]
    assert "bos_batch_id" in incident_columns["columns"]
    analysts = manifest["exposures"]["exposure.cj_batch_health.cj_batch_health_analysis"]
    assert set(monitoring) <= set(analysts["depends_on"]["nodes"])
