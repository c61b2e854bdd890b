"""`cj-health inspect`: the facts of one batch, its --json form, and bad ids. Its counts and
verdict come from the dbt relations, so they agree with `cj_batch_health` field by field."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import _create, _drop
from markdown_support import heading_anchors

from cj_health.build import BUILD_ARGS
from cj_health.cli import main
from cj_health.db import Database, connect, monitoring_schema
from cj_health.dbt_runner import run_dbt
from cj_health.eng5.replay import replay_batch20
from cj_health.eng5.runner import execute_batch
from cj_health.inspect import load_report
from cj_health.paths import project_dir
from cj_health.schema import init_schema

PROJECT = project_dir()

REPORT_KEYS = {
    "cj_batch_id", "bos_batch_id", "assignment_id", "course_code", "grade_scale",
    "expected_essay_count", "upload_status", "cj_state", "comparisons", "pairs", "essays",
    "projections", "events", "health", "timestamps", "reliability", "diagnosis",
}
# inspect --json field -> the cj_batch_health column it must equal.
AGREES_WITH_VIEW = {
    ("upload_status",): "upload_status",
    ("cj_state",): "cj_state",
    ("grade_scale",): "grade_scale",
    ("comparisons", "submitted"): "comparisons_submitted",
    ("comparisons", "completed"): "comparisons_completed",
    ("comparisons", "failed"): "comparisons_failed",
    ("pairs", "total"): "pair_count",
    ("pairs", "completed"): "pairs_completed",
    ("pairs", "errored"): "pairs_errored",
    ("pairs", "pending"): "pairs_pending",
    ("essays", "total"): "essay_count",
    ("essays", "students"): "student_count",
    ("essays", "anchors_by_flag"): "anchor_count",
    ("essays", "anchors_by_metadata"): "metadata_anchor_count",
    ("essays", "anchor_flag_mismatches"): "anchor_flag_mismatch_count",
    ("essays", "invalid_anchor_metadata"): "invalid_anchor_metadata_count",
    ("essays", "registered_anchors"): "registered_anchor_count",
    ("essays", "scored_students"): "scored_student_count",
    ("projections", "count"): "projection_count",
    ("projections", "on_anchors"): "anchor_projection_count",
    ("projections", "misattributed"): "misattributed_projection_count",
    ("projections", "students_without"): "students_without_projection_count",
    ("projections", "invalid"): "invalid_projection_count",
    ("health", "status"): "health_status",
    ("health", "issues"): "issues",
    ("health", "is_alerting"): "is_alerting",
}


def disagreements(database: Database, cj_batch_id: int) -> list[str]:
    """Fields where inspect's report differs from the batch's row in cj_batch_health."""
    report = load_report(database, cj_batch_id).as_dict()
    with connect(database) as conn:
        cursor = conn.execute(
            f'select * from "{monitoring_schema()}".cj_batch_health where cj_batch_id = %s',
            (cj_batch_id,),
        )
        names = [column.name for column in cursor.description]
        row = dict(zip(names, cursor.fetchone(), strict=True))
    found = []
    for path, column in AGREES_WITH_VIEW.items():
        value = report
        for key in path:
            value = value[key]
        expected = list(row[column]) if isinstance(row[column], list) else row[column]
        if value != expected:
            found.append(f"{'.'.join(path)}={value!r} but {column}={expected!r}")
    unpublished = sum(not event["published"] for event in report["events"])
    if unpublished != row["unpublished_event_count"]:
        found.append(f"{unpublished} unpublished events but {row['unpublished_event_count']}")
    mismatched = sum(not event["correlation_matches_upload"] for event in report["events"])
    if mismatched != row["correlation_mismatch_event_count"]:
        found.append(f"{mismatched} correlation mismatches, view "
                     f"{row['correlation_mismatch_event_count']}")
    return found


@pytest.fixture(scope="module")
def built_template(admin_db: Database, tmp_path_factory) -> Iterator[tuple[str, int, int]]:
    """A healthy 6-student ENG5 batch and the replayed Batch 20 incident, with the
    monitoring models built (cloned for each test); yields (name, healthy id, incident id)."""
    database = _create(admin_db)
    try:
        init_schema(database)
        out = tmp_path_factory.mktemp("runs")
        healthy = execute_batch(database, students=6, seed=3, out_dir=out).cj_batch_id
        incident = replay_batch20(database).cj_batch_id
        models = run_dbt(database, BUILD_ARGS)
        assert models.ok, models.output[-2000:]
        yield database.dbname, healthy, incident
    finally:
        _drop(admin_db, database.dbname)


@pytest.fixture
def built(
    make_database, built_template, monkeypatch: pytest.MonkeyPatch
) -> tuple[Database, int, int]:
    name, healthy, incident = built_template
    database = make_database(template=name)
    monkeypatch.setenv("CJ_DATABASE_URL", database.url)
    monkeypatch.setenv("CJ_ENVIRONMENT", "test")
    return database, healthy, incident


@pytest.mark.parametrize("raw", ["424242", "abc", "0", "-3", "1.5", "99999999999", " "])
def test_unknown_or_malformed_batch_id_exits_4_with_one_line(
    cj_env: Database, raw: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", raw]) == 4
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("cj-health: no CJ batch ")
    assert len(err.strip().splitlines()) == 1
    assert "None" not in err


def test_json_report_of_a_healthy_batch(built, capsys: pytest.CaptureFixture[str]) -> None:
    database, healthy, _ = built
    assert main(["inspect", str(healthy), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)

    assert set(report) == REPORT_KEYS
    assert report["upload_status"] == "COMPLETE_STABLE"
    assert report["cj_state"] == "COMPLETED"
    assert report["essays"]["students"] == 6
    assert report["essays"]["anchors_by_flag"] == report["essays"]["anchors_by_metadata"] == 12
    assert report["projections"]["count"] == 6
    assert report["projections"]["on_anchors"] == 0
    assert report["pairs"]["completed"] == report["comparisons"]["completed"]
    assert sorted((e["topic"], e["event_type"]) for e in report["events"]) == [
        ("huleedu.assessment.result.published.v1", "assessment.result.published"),
        ("huleedu.cj_assessment.completed.v1", "huleedu.cj_assessment.completed.v1"),
        ("huleedu.resource.consumption.v1", "huleedu.resource.consumption.v1"),
    ]
    assert all(e["correlation_matches_upload"] for e in report["events"])
    assert report["timestamps"]["completed_at"] is not None
    # The verdict is the view's, as of its last refresh (a 6-student batch may be LOW_RELIABILITY).
    assert report["health"]["refreshed_at"] is not None
    assert disagreements(database, healthy) == []


def test_without_the_monitoring_built_the_verdict_is_not_invented(
    cj_env: Database, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = execute_batch(cj_env, students=4, seed=5, out_dir=tmp_path)
    assert main(["inspect", str(run.cj_batch_id), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "int_batch_facts" in err and "cj-health build" in err


def test_json_output_is_stable_and_carries_no_essay_text(
    built, capsys: pytest.CaptureFixture[str]
) -> None:
    database, healthy, incident = built
    for batch in (healthy, incident):
        main(["inspect", str(batch), "--json"])
        first = capsys.readouterr().out
        main(["inspect", str(batch), "--json"])
        assert capsys.readouterr().out == first
        main(["inspect", str(batch)])
        text = capsys.readouterr().out
        with connect(database) as conn:
            essays = [
                row[0]
                for row in conn.execute(
                    "select assessment_input_text from cj_processed_essays where cj_batch_id = %s",
                    (batch,),
                )
            ]
        assert essays
        for essay in essays:
            assert essay not in first
            assert essay not in text


def test_the_replayed_incident_reads_like_the_incident_report(built) -> None:
    database, _, incident = built
    report = load_report(database, incident).as_dict()
    assert (report["upload_status"], report["cj_state"]) == ("COMPLETE_STABLE", "WAITING_CALLBACKS")
    assert report["comparisons"]["submitted"] == report["comparisons"]["completed"] == 5
    assert report["comparisons"]["failed"] == 0
    assert report["comparisons"]["partial_scoring_triggered"] is True
    assert report["essays"]["total"] == 18
    assert report["essays"]["anchors_by_metadata"] == 15
    assert report["essays"]["anchors_by_flag"] == 0
    # Students are the essays that are anchors by neither the column nor the metadata.
    assert report["essays"]["students"] == 3
    assert report["essays"]["anchor_flag_mismatches"] == 15
    assert report["projections"]["count"] == 0
    assert report["timestamps"]["completed_at"] is None
    assert "STUCK_FINALIZATION" in report["health"]["issues"]


def test_inspect_agrees_with_the_health_view_on_the_incident(built) -> None:
    database, healthy, incident = built
    assert disagreements(database, incident) == []
    assert disagreements(database, healthy) == []


def test_the_incident_is_diagnosed_with_its_cause_and_runbook_sections(
    built, capsys: pytest.CaptureFixture[str]
) -> None:
    """Batch 20: the lost anchor flags are the main cause, STUCK_FINALIZATION follows from
    them; each code has its rule from cj_problem_codes, the facts it is about and a runbook
    section that exists."""
    database, healthy, incident = built
    report = load_report(database, incident).as_dict()
    diagnosis = report["diagnosis"]
    assert diagnosis["main_cause"] == "ANCHOR_FLAG_MISMATCH"
    assert "STUCK_FINALIZATION" in diagnosis["explains"]
    findings = {finding["code"]: finding for finding in diagnosis["findings"]}
    assert list(findings) == report["health"]["issues"]
    with connect(database) as conn:
        rules = dict(conn.execute(
            f'select problem_code, rule_summary from "{monitoring_schema()}".cj_problem_codes'
        ).fetchall())  # fmt: skip
    assert all(finding["rule"] == rules[code] for code, finding in findings.items())
    assert findings["ANCHOR_FLAG_MISMATCH"]["evidence"] == (
        "15 essays disagree: 0 anchors by the is_anchor column, 15 by processing_metadata")
    assert findings["STUCK_FINALIZATION"]["runbook"] == "docs/runbook.md#stuck_finalization"
    runbook = (PROJECT / "docs" / "runbook.md").read_text()
    assert {f["runbook"].split("#")[1] for f in findings.values()} <= heading_anchors(runbook)

    assert main(["inspect", str(incident)]) == 0
    text = capsys.readouterr().out
    assert "main cause: ANCHOR_FLAG_MISMATCH (explains STUCK_FINALIZATION" in text
    assert "registered for the assignment" in text
    assert "runbook: docs/runbook.md#anchor_flag_mismatch" in text
    # The healthy batch has no codes, or only LOW_RELIABILITY (6 students), its own cause.
    calm = load_report(database, healthy).as_dict()
    issues = calm["health"]["issues"]
    assert calm["diagnosis"]["note" if not issues else "main_cause"] == (
        issues[0] if issues else "no problem codes")
