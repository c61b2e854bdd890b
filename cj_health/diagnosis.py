"""The diagnosis `cj-health inspect` prints under a batch's facts: per problem code of the
verdict, its rule (from the cj_problem_codes model), what this batch's facts show for it, and
the runbook section to follow; and which code is the main cause.

Nothing here judges a batch: the codes are the health view's (one definition, in dbt). This
module only lays out the facts that each code is about, and knows which codes explain others:
an anchor flag the repository dropped (ANCHOR_FLAG_MISMATCH), anchors nobody can read
(INVALID_ANCHOR_METADATA) or no anchors at all (NO_ANCHORS) leave the finalizer nothing to
project with, so a batch that also shows STUCK_FINALIZATION, SCORING_TOO_LONG or
MISSING_PROJECTIONS has its cause in the anchors, as Batch 20 had.

The runbook link of each code comes from the runbook's own table of problem codes
(`docs/runbook.md`, section "Problem codes"), so the runbook is the one home of where a code is
treated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cj_health.paths import project_dir

RUNBOOK = "docs/runbook.md"
# Codes whose condition makes others happen, in the order to fix them; the codes they explain.
ROOT_CAUSES = ("ANCHOR_FLAG_MISMATCH", "INVALID_ANCHOR_METADATA", "NO_ANCHORS")
EXPLAINED_BY_ANCHORS = ("STUCK_FINALIZATION", "SCORING_TOO_LONG", "MISSING_PROJECTIONS")
_TABLE_ROW = re.compile(r"^\|\s*`(?P<code>[A-Z_]+)`\s*\|.*\]\((?P<anchor>#[a-z0-9_-]+)\)\s*\|\s*$")


@dataclass(frozen=True)
class Finding:
    """One problem code of the batch, explained."""

    code: str
    rule: str
    evidence: str
    runbook: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "rule": self.rule, "evidence": self.evidence,
                "runbook": self.runbook}  # fmt: skip


@dataclass(frozen=True)
class Diagnosis:
    """The findings, and the main cause with the codes it explains."""

    main_cause: str | None
    explains: tuple[str, ...]
    findings: tuple[Finding, ...]
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "main_cause": self.main_cause,
            "explains": list(self.explains),
            "findings": [finding.as_dict() for finding in self.findings],
            "note": self.note,
        }


def runbook_sections(text: str) -> dict[str, str]:
    """Problem code -> `docs/runbook.md#anchor`, read from the runbook's table of codes."""
    sections = {}
    for line in text.splitlines():
        match = _TABLE_ROW.match(line.strip())
        if match:
            sections[match["code"]] = RUNBOOK + match["anchor"]
    return sections


def load_runbook_sections() -> dict[str, str]:
    """The runbook's sections per code, as paths in the project."""
    path = project_dir() / RUNBOOK
    return runbook_sections(path.read_text(encoding="utf-8")) if path.is_file() else {}


def diagnose(
    report: dict[str, Any], rules: dict[str, str], sections: dict[str, str]
) -> Diagnosis:
    """The diagnosis of an inspect report (`BatchReport.as_dict()` without its diagnosis)."""
    health = report["health"]
    if health is None:
        return Diagnosis(None, (), (), "not judged: the monitoring is not built (cj-health build)")
    issues = list(health["issues"])
    if health["status"] == "NOT_IN_VIEW_YET":
        return Diagnosis(None, (), (), "not judged yet: the batch is newer than the health "
                         "view's last refresh (cj-health refresh)")  # fmt: skip
    if not issues:
        return Diagnosis(None, (), (), "no problem codes")
    findings = tuple(
        Finding(
            code,
            rules.get(code, "(not a code of cj_problem_codes: rebuild the monitoring)"),
            evidence(code, report),
            sections.get(code, RUNBOOK + "#problem-codes"),
        )
        for code in issues
    )
    root = next((code for code in ROOT_CAUSES if code in issues), None)
    if root is None:
        return Diagnosis(issues[0], (), findings)
    explained = tuple(code for code in issues if code in EXPLAINED_BY_ANCHORS)
    return Diagnosis(root, explained, findings)


def evidence(code: str, report: dict[str, Any]) -> str:
    """What the batch's facts show for one code (inspect's facts are current; the codes are
    the health view's as of its last refresh)."""
    c, p, e, pr = report["comparisons"], report["pairs"], report["essays"], report["projections"]
    t = report["timestamps"]
    events = report["events"]
    state = report["cj_state"] or "(no state row)"
    idle = f"last activity {t['last_activity_at']}"
    mismatched = sum(not event["correlation_matches_upload"] for event in events)
    by_code = {
        "STUCK_FINALIZATION": f"upload {report['upload_status']}, state {state}, "
        f"{pr['count']} projections, {idle}",
        "SCORING_TOO_LONG": f"state {state}, {idle}",
        "COMPLETION_INCONSISTENT": f"upload {report['upload_status']}, state {state}, "
        f"completed_at {t['completed_at'] or 'NULL'}",
        "MISSING_PROJECTIONS": f"{pr['students_without']} of {e['students']} students "
        "without a projection",
        "ANCHOR_FLAG_MISMATCH": f"{e['anchor_flag_mismatches']} essays disagree: "
        f"{e['anchors_by_flag']} anchors by the is_anchor column, "
        f"{e['anchors_by_metadata']} by processing_metadata",
        "NO_ANCHORS": f"{e['anchors_by_flag']} anchors by the is_anchor column, "
        f"{e['registered_anchors']} registered for the assignment",
        "ANCHOR_PROJECTED": f"{pr['on_anchors']} projections on anchors",
        "MISATTRIBUTED_PROJECTION": f"{pr['misattributed']} projections of other batches' essays",
        "EVENTS_MISSING": f"{len(events)} outbox events: "
        + (", ".join(sorted({event["topic"] for event in events})) or "none"),
        "EVENT_CORRELATION_MISMATCH": f"{mismatched} events carry another correlation id "
        "than the upload's",
        "EVENTS_UNPUBLISHED": f"{sum(not ev['published'] for ev in events)} of {len(events)} "
        "events unpublished",
        "STALLED": f"state {state}, {p['pending']} pairs pending, {idle}",
        "COUNTER_MISMATCH": f"counters submitted {c['submitted']} completed {c['completed']} "
        f"failed {c['failed']}; pairs {p['total']}, {p['completed']} completed, "
        f"{p['errored']} errored",
        "INVALID_PROJECTION": f"{pr['invalid']} invalid projections",
        "INVALID_ANCHOR_METADATA": f"{e['invalid_anchor_metadata']} essays with an unreadable "
        "processing_metadata.is_anchor",
        "LOW_RELIABILITY": f"scale separation reliability {report.get('reliability')}, "
        f"{e['scored_students']} scored students",
    }
    return by_code.get(code, "see the facts above")


def render(diagnosis: dict[str, Any]) -> list[str]:
    """A diagnosis (`Diagnosis.as_dict()`) as lines of inspect's text report."""
    if diagnosis["note"]:
        return [f"  diagnosis          {diagnosis['note']}"]
    line = f"  diagnosis          main cause: {diagnosis['main_cause']}"
    if diagnosis["explains"]:
        line += f" (explains {', '.join(diagnosis['explains'])})"
    lines = [line]
    for finding in diagnosis["findings"]:
        lines += [
            f"    {finding['code']}: {finding['evidence']}",
            f"      rule: {finding['rule']}",
            f"      runbook: {finding['runbook']}",
        ]
    return lines
