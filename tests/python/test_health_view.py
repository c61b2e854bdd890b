"""What cj_batch_health and cj_batch_alerts say about real batches, after one `build`:
healthy ENG5 batches, the Batch 20 replica, a batch still running, and faults the fault
catalogue does not cover (an unreadable anchor flag, a projection outside its scale, an event
with the wrong correlation id). Also: what `build` reports, and that nothing it stores for
analysts carries student writing or personal data.

The complete fault-by-fault detection matrix is test_detection_matrix.py's subject.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conftest import cloned_database
from psycopg import sql
from psycopg.rows import dict_row

from cj_health.build import BuildResult, build
from cj_health.db import Database, connect, monitoring_schema
from cj_health.eng5.faults import break_batch
from cj_health.eng5.replay import INCIDENT_CODES, replay_batch20


@dataclass
class Built:
    database: Database
    result: BuildResult
    healthy: int
    other_healthy: int
    running: int
    incident: int
    odd_flag: int
    odd_projection: int
    odd_event: int
    misattributed: int


@pytest.fixture(scope="module")
def built(admin_db: Database, schema_template: str, tmp_path_factory) -> Iterator[Built]:
    from cj_health.eng5.runner import execute_batch

    with cloned_database(admin_db, schema_template) as database:
        out = tmp_path_factory.mktemp("runs")

        def run(seed: int, **kwargs) -> int:
            return execute_batch(database, seed=seed, out_dir=out / str(seed), **kwargs).cj_batch_id

        ids = {
            "healthy": run(1),
            "other_healthy": run(2),
            "running": run(3, finalize=False),
            "odd_flag": run(4),
            "odd_projection": run(5),
            "odd_event": run(6),
            "misattributed": run(7),
        }
        ids["incident"] = replay_batch20(database).cj_batch_id
        break_batch(
            database, "misattributed_projection", ids["misattributed"], ids["other_healthy"]
        )
        with connect(database) as conn:
            conn.execute(
                "update cj_processed_essays set processing_metadata ="
                " json_build_object('is_anchor', 'yes')"
                " where els_essay_id = (select min(els_essay_id) from cj_processed_essays"
                " where cj_batch_id = %s and is_anchor)",
                (ids["odd_flag"],),
            )
            conn.execute(
                "update grade_projections set primary_grade = 'Z', confidence_score = 1.5"
                " where (els_essay_id, cj_batch_id) = (select els_essay_id, cj_batch_id"
                " from grade_projections where cj_batch_id = %s order by els_essay_id limit 1)",
                (ids["odd_projection"],),
            )
            conn.execute(
                "update event_outbox set event_data = json_build_object("
                " 'correlation_id', 'not-the-upload-correlation-id', 'data', '{}'::json)"
                " where aggregate_type = 'assessment_result' and aggregate_id = %s",
                (str(ids["odd_event"]),),
            )
            conn.commit()
        yield Built(database, build(database), **ids)


def rows(database: Database, view: str, order_by: str = "1") -> dict[int, dict] | list[dict]:
    with connect(database) as conn, conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute(
            sql.SQL("select * from {} order by {}").format(
                sql.Identifier(monitoring_schema(), view), sql.SQL(order_by)
            )
        ).fetchall()
    if view == "cj_batch_health":
        return {row["cj_batch_id"]: row for row in found}
    return found


def test_healthy_batches_are_healthy_with_the_counts_of_their_rows(built: Built) -> None:
    health = rows(built.database, "cj_batch_health")
    with connect(built.database) as conn:
        pairs = conn.execute(
            "select count(*) from cj_comparison_pairs where cj_batch_id = %s", (built.healthy,)
        ).fetchone()[0]
    row = health[built.healthy]
    assert (row["health_status"], row["issues"], row["is_alerting"]) == ("HEALTHY", [], False)
    assert (row["upload_status"], row["cj_state"]) == ("COMPLETE_STABLE", "COMPLETED")
    assert (row["essay_count"], row["student_count"]) == (24, 12)
    assert (row["anchor_count"], row["metadata_anchor_count"], row["registered_anchor_count"]) == (
        12,
        12,
        12,
    )
    assert (row["projection_count"], row["students_without_projection_count"]) == (12, 0)
    assert row["pair_count"] == row["pairs_completed"] == row["comparisons_completed"] == pairs
    # Finalization writes three events: completion, result, resource consumption.
    assert (row["outbox_event_count"], row["completion_event_count"]) == (3, 1)
    assert row["scale_separation_reliability"] >= 0.7
    (refresh,) = rows(built.database, "cj_batch_health_refresh")
    assert row["completed_at"] is not None and refresh["refreshed_at"] >= row["completed_at"]
    assert health[built.other_healthy]["health_status"] == "HEALTHY"


def test_a_batch_still_waiting_for_callbacks_is_in_progress(built: Built) -> None:
    row = rows(built.database, "cj_batch_health")[built.running]
    assert (row["cj_state"], row["health_status"], row["is_alerting"]) == (
        "WAITING_CALLBACKS",
        "IN_PROGRESS",
        False,
    )
    assert row["projection_count"] == 0 and row["completed_at"] is None


def test_the_batch20_replica_is_stuck_finalization_and_alerts(built: Built) -> None:
    row = rows(built.database, "cj_batch_health")[built.incident]
    assert row["health_status"] == "STUCK_FINALIZATION"
    assert set(INCIDENT_CODES) <= set(row["issues"])
    assert row["issues"][0] == "STUCK_FINALIZATION"  # worst first
    assert (row["upload_status"], row["cj_state"]) == ("COMPLETE_STABLE", "WAITING_CALLBACKS")
    assert (row["essay_count"], row["anchor_count"], row["metadata_anchor_count"]) == (18, 0, 15)
    assert row["anchor_flag_mismatch_count"] == 15
    assert (row["comparisons_submitted"], row["comparisons_completed"]) == (5, 5)
    alerts = [
        a for a in rows(built.database, "cj_batch_alerts") if a["cj_batch_id"] == built.incident
    ]
    assert sorted(a["issue"] for a in alerts) == sorted(row["issues"])
    stuck = next(a for a in alerts if a["issue"] == "STUCK_FINALIZATION")
    assert row["projection_count"] == 0 and stuck["minutes_since_activity"] > 5
    assert (stuck["bos_batch_id"], stuck["cj_state"]) == (row["bos_batch_id"], row["cj_state"])
    assert (stuck["severity"], stuck["since"]) == ("critical", row["last_activity_at"])


def test_faults_beyond_the_catalogue_are_named(built: Built) -> None:
    health = rows(built.database, "cj_batch_health")
    assert health[built.odd_flag]["issues"] == ["INVALID_ANCHOR_METADATA"]
    assert health[built.odd_flag]["invalid_anchor_metadata_count"] == 1
    assert health[built.odd_projection]["issues"] == ["INVALID_PROJECTION"]
    assert health[built.odd_event]["issues"] == ["EVENT_CORRELATION_MISMATCH"]
    assert health[built.odd_event]["correlation_mismatch_event_count"] == 1
    misattributed = health[built.misattributed]
    assert misattributed["issues"] == ["MISATTRIBUTED_PROJECTION"]
    assert misattributed["misattributed_projection_count"] == 1


def test_the_alert_view_has_one_row_per_alerting_batch_and_issue(built: Built) -> None:
    health = rows(built.database, "cj_batch_health")
    alerts = rows(built.database, "cj_batch_alerts")
    expected = {
        (cj_batch_id, issue)
        for cj_batch_id, row in health.items()
        if row["is_alerting"]
        for issue in row["issues"]
    }
    assert {(a["cj_batch_id"], a["issue"]) for a in alerts} == expected
    assert len(alerts) == len(expected)
    assert {a["severity"] for a in alerts} <= {"critical", "warning"}
    assert all(a["since"] is not None for a in alerts)
    assert built.healthy not in {a["cj_batch_id"] for a in alerts}
    for cj_batch_id, row in health.items():
        since = [a["since"] for a in alerts if a["cj_batch_id"] == cj_batch_id]
        assert row["alerting_since"] == (min(since) if since else None)


def test_build_reports_the_broken_invariants(built: Built) -> None:
    result = built.result
    assert result.models_ok
    assert result.tests_broken == []  # the unit tests pass; every test could run
    assert result.exit_code == 1
    failed = {node.name: node for node in result.tests_failed}
    assert set(failed) == {
        "assert_anchor_flag_agrees",  # the incident's 15 anchors and the unreadable flag
        "assert_complete_upload_is_completed",  # the incident
        "assert_projections_attributed",
        "assert_projection_values_valid",
        "assert_completed_batch_events",
        "assert_no_batch_alerting",
    }
    assert failed["assert_anchor_flag_agrees"].failures == 16
    assert failed["assert_no_batch_alerting"].failures == 5
    audit = f"{monitoring_schema()}_dbt_test__audit"
    assert all(node.relation and audit in node.relation for node in failed.values())


def test_stored_failures_hold_ids_not_student_writing_or_personal_data(built: Built) -> None:
    audit = f"{monitoring_schema()}_dbt_test__audit"
    with connect(built.database) as conn:
        texts = [
            text[:40]
            for (text,) in conn.execute(
                "select assessment_input_text from cj_processed_essays"
                " where assessment_input_text is not null"
            )
        ]
        people = [
            value
            for row in conn.execute("select user_id, org_id from cj_batch_uploads")
            for value in row
            if value
        ]
        tables = [
            name
            for (name,) in conn.execute(
                "select table_name from information_schema.tables where table_schema = %s",
                (audit,),
            )
        ]
        columns = {
            name
            for (name,) in conn.execute(
                "select column_name from information_schema.columns where table_schema = %s",
                (audit,),
            )
        }
        stored = [
            text
            for table in tables
            for (text,) in conn.execute(
                sql.SQL("select row_to_json(t)::text from {} as t").format(
                    sql.Identifier(audit, table)
                )
            )
        ]
    assert texts and people and stored
    forbidden = {"assessment_input_text", "user_id", "org_id", "prompt_text", "justification",
                 "raw_llm_response", "event_data", "calculation_metadata"}
    assert columns and not (columns & forbidden)
    leaks = [text for text in stored for needle in texts + people if needle in text]
    assert leaks == []


def test_every_problem_code_is_documented_in_order(built: Built) -> None:
    import re

    from cj_health.paths import project_dir

    listed = rows(built.database, "cj_problem_codes", order_by="severity_rank")
    codes = [row["problem_code"] for row in listed]
    ranks = [row["severity_rank"] for row in listed]
    assert len(codes) >= 11 and ranks == list(range(1, len(codes) + 1))
    docs = (project_dir() / "docs/problem_codes.md").read_text()
    documented = re.findall(r"^\| \d+ \| `([A-Z_]+)` \|", docs, flags=re.MULTILINE)
    assert documented == codes
    # Each rule in words has one home, the macro: the docs show its summary word for word.
    documented_rules = dict(
        re.findall(r"^\| \d+ \| `([A-Z_]+)` \| \w+ \| (.*?) \| .*? \|$", docs, flags=re.MULTILINE)
    )
    assert documented_rules == {row["problem_code"]: row["rule_summary"] for row in listed}
    marts = (project_dir() / "models/marts/_marts__models.yml").read_text()
    assert "cj_problem_codes()" in marts and not re.search(r"^      - [A-Z_]+:", marts, re.M)
