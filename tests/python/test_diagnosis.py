"""The diagnosis under `cj-health inspect`: which code is the main cause, the facts each code
is about, and the runbook section of every problem code (read from the runbook's table)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from markdown_support import heading_anchors

from cj_health.diagnosis import diagnose, evidence, render, runbook_sections
from cj_health.paths import project_dir

pytestmark = pytest.mark.unit


def problem_codes() -> list[str]:
    """The codes of the macro cj_problem_codes, their one definition."""
    text = (project_dir() / "macros" / "problem_codes.sql").read_text(encoding="utf-8")
    return re.findall(r"\{'code': '([A-Z_]+)'", text)


def report(issues: list[str], **essays: int) -> dict[str, Any]:
    counts = {"total": 18, "students": 3, "anchors_by_flag": 15, "anchors_by_metadata": 15,
              "anchor_flag_mismatches": 0, "invalid_anchor_metadata": 0,
              "registered_anchors": 12, "scored_students": 3}  # fmt: skip
    counts.update(essays)
    return {
        "upload_status": "COMPLETE_STABLE", "cj_state": "WAITING_CALLBACKS",
        "comparisons": {"submitted": 5, "completed": 5, "failed": 0},
        "pairs": {"total": 5, "completed": 5, "errored": 0, "pending": 0},
        "essays": counts,
        "projections": {"count": 0, "on_anchors": 0, "misattributed": 0,
                        "students_without": 3, "invalid": 0},  # fmt: skip
        "events": [], "reliability": None,
        "timestamps": {"completed_at": None, "last_activity_at": "2026-12-05T10:00:00"},
        "health": {"status": issues[0] if issues else "HEALTHY", "issues": issues},
    }  # fmt: skip


def test_every_problem_code_has_a_runbook_section_that_exists() -> None:
    runbook = (project_dir() / "docs" / "runbook.md").read_text(encoding="utf-8")
    sections = runbook_sections(runbook)
    assert set(problem_codes()) <= set(sections)
    anchors = heading_anchors(runbook)
    assert {link.partition("#")[2] for link in sections.values()} <= anchors


def test_lost_anchor_flags_are_the_main_cause_of_a_stuck_finalization() -> None:
    batch = report(["STUCK_FINALIZATION", "ANCHOR_FLAG_MISMATCH"], anchors_by_flag=0,
                   anchor_flag_mismatches=15)  # fmt: skip
    result = diagnose(batch, {}, {}).as_dict()
    assert result["main_cause"] == "ANCHOR_FLAG_MISMATCH"
    assert result["explains"] == ["STUCK_FINALIZATION"]
    assert [finding["code"] for finding in result["findings"]] == batch["health"]["issues"]
    lines = render(result)
    assert lines[0].endswith("main cause: ANCHOR_FLAG_MISMATCH (explains STUCK_FINALIZATION)")


def test_without_an_anchor_code_the_worst_code_is_the_main_cause() -> None:
    result = diagnose(report(["STUCK_FINALIZATION", "STALLED"]), {}, {})
    assert (result.main_cause, result.explains) == ("STUCK_FINALIZATION", ())


@pytest.mark.parametrize("health, note", [
    (None, "not judged: the monitoring is not built"),
    ({"status": "NOT_IN_VIEW_YET", "issues": []}, "not judged yet"),
    ({"status": "HEALTHY", "issues": []}, "no problem codes"),
])  # fmt: skip
def test_a_batch_without_codes_gets_a_note_never_a_cause(health, note) -> None:
    batch = report([])
    batch["health"] = health
    result = diagnose(batch, {}, {})
    assert result.main_cause is None and result.note.startswith(note)
    assert render(result.as_dict()) == [f"  diagnosis          {result.note}"]


def test_every_problem_code_has_its_own_evidence() -> None:
    batch = report([])
    texts = {code: evidence(code, batch) for code in problem_codes()}
    assert "see the facts above" not in texts.values()
    assert len(set(texts.values())) == len(texts)
