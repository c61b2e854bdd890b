"""`cj-health inspect`: the facts of one batch, its --json form, and bad ids."""

from __future__ import annotations

import json

import pytest

from cj_health.cli import main
from cj_health.db import Database, connect
from cj_health.eng5.runner import execute_batch
from cj_health.inspect import load_report
from cj_health.replay import replay_batch20

REPORT_KEYS = {
    "cj_batch_id", "bos_batch_id", "assignment_id", "course_code", "expected_essay_count",
    "upload_status", "cj_state", "comparisons", "pairs", "essays", "projections", "events",
    "health", "timestamps",
}


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


def test_json_report_of_a_healthy_batch(
    cj_env: Database, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = execute_batch(cj_env, students=6, seed=3, out_dir=tmp_path)
    assert main(["inspect", str(run.cj_batch_id), "--json"]) == 0
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
    # Monitoring not built in this database: the verdict is unknown, not invented.
    assert report["health"] is None


def test_json_output_is_stable_and_carries_no_essay_text(
    cj_env: Database, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = execute_batch(cj_env, students=4, seed=5, out_dir=tmp_path)
    main(["inspect", str(run.cj_batch_id), "--json"])
    first = capsys.readouterr().out
    main(["inspect", str(run.cj_batch_id), "--json"])
    assert capsys.readouterr().out == first
    main(["inspect", str(run.cj_batch_id)])
    text = capsys.readouterr().out
    with connect(cj_env) as conn:
        essays = [
            row[0]
            for row in conn.execute(
                "select assessment_input_text from cj_processed_essays where cj_batch_id = %s",
                (run.cj_batch_id,),
            )
        ]
    assert essays
    for essay in essays:
        assert essay not in first
        assert essay not in text


def test_the_replayed_incident_reads_like_the_incident_report(cj_env: Database) -> None:
    incident = replay_batch20(cj_env)
    report = load_report(cj_env, incident.cj_batch_id).as_dict()
    assert (report["upload_status"], report["cj_state"]) == ("COMPLETE_STABLE", "WAITING_CALLBACKS")
    assert report["comparisons"]["submitted"] == report["comparisons"]["completed"] == 5
    assert report["comparisons"]["failed"] == 0
    assert report["comparisons"]["partial_scoring_triggered"] is True
    assert report["essays"]["total"] == 18
    assert report["essays"]["anchors_by_metadata"] == 15
    assert report["essays"]["anchors_by_flag"] == 0
    assert report["projections"]["count"] == 0
    assert report["timestamps"]["completed_at"] is None
