"""`cj-health demo`, the main job, end to end on a database of its own."""

from __future__ import annotations

import pytest

from cj_health.cli import main
from cj_health.db import Database, connect
from cj_health.demo import health_rows


def test_demo_flags_the_incident_and_only_the_incident(
    cj_env: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CJ_ENVIRONMENT", "test")  # the reset inside the demo needs a dev/test db
    assert main(["demo"]) == 0  # the tooling worked, although the incident batch is unhealthy
    out = capsys.readouterr().out

    rows = {row["cj_batch_id"]: row for row in health_rows(cj_env)}
    incident = [row for row in rows.values() if row["health_status"] != "HEALTHY"]
    assert len(rows) == 3 and len(incident) == 1
    assert {"STUCK_FINALIZATION", "ANCHOR_FLAG_MISMATCH"} <= set(incident[0]["issues"])
    assert incident[0]["upload_status"] == "COMPLETE_STABLE"
    assert incident[0]["cj_state"] == "WAITING_CALLBACKS"

    # Every step said its piece, and the verdict is plain.
    for heading in ("Replay the Batch 20 incident", "cj-health build", "cj-health inspect",
                    "cj-health check", "Where to look next"):
        assert heading in out
    assert f"the replayed incident (CJ batch {incident[0]['cj_batch_id']})" in out
    assert "index.html" in out and "runbook.md" in out

    with connect(cj_env) as conn:
        query = "select assessment_input_text from cj_processed_essays"
        texts = [row[0] for row in conn.execute(query)]
    assert texts and not any(text in out for text in texts)
