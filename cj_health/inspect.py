"""`cj-health inspect`: one batch's facts, laid out like the Batch 20 incident report.

The facts and the verdict come from the dbt relations, so inspect and the health view count
the same way (the same anchor flag parsing, the same student and projection rules):
- the batch's counts from `int_batch_facts`, a plain view over the staging views: current
  even between refreshes of the health view;
- the detail the views aggregate away: the comparison budget (`stg_cj__batch_states`),
  projections per grade (`int_essays_joined_to_projections`) and the outbox events matched to
  the batch (`int_outbox_events_mapped_to_batches`, with their `event_type`);
- the verdict from `cj_batch_health` as of its last refresh, and its diagnosis
  (`cj_health.diagnosis`): each code's rule from `cj_problem_codes`, the facts it is about,
  its runbook section, and the main cause.
Only whether the batch exists is read from the service table itself, so an unknown id says
so (exit 4) before anything asks for the monitoring to be built (exit 2). All queries are
parameterised; no essay text is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from cj_health.db import Database, connect, monitoring_schema, source_schema
from cj_health.diagnosis import diagnose, load_runbook_sections
from cj_health.diagnosis import render as render_diagnosis
from cj_health.errors import BatchNotFound, CjHealthError
from cj_health.monitoring_tables import (
    BATCH_FACTS_VIEW,
    HEALTH_VIEW,
    PROBLEM_CODES_VIEW,
    REFRESH_VIEW,
    relation_exists,
)
from cj_health.text import escape

MAX_INT4 = 2_147_483_647
STATES_VIEW = "stg_cj__batch_states"
ESSAY_PROJECTIONS_VIEW = "int_essays_joined_to_projections"
EVENTS_VIEW = "int_outbox_events_mapped_to_batches"
OUTBOX_VIEW = "stg_cj__event_outbox"
READ_RELATIONS = (BATCH_FACTS_VIEW, STATES_VIEW, ESSAY_PROJECTIONS_VIEW, EVENTS_VIEW, OUTBOX_VIEW)

FACTS_SQL = """
select facts.*, states.total_budget
from {facts} as facts
left join {states} as states on facts.cj_batch_id = states.cj_batch_id
where facts.cj_batch_id = %(id)s
"""

GRADES_SQL = """
select primary_grade, count(*) as n
from {essay_projections}
where cj_batch_id = %(id)s and has_projection
group by primary_grade
order by primary_grade
"""

EVENTS_SQL = """
select events.topic, outbox.event_type, events.aggregate_type, events.aggregate_id,
       events.correlation_id, events.is_correlation_mismatch, events.created_at,
       events.published_at
from {events} as events
inner join {outbox} as outbox on events.outbox_event_id = outbox.outbox_event_id
where events.cj_batch_id = %(id)s
order by events.created_at, events.topic, events.outbox_event_id
"""

RULES_SQL = "select problem_code, rule_summary from {problem_codes}"

HEALTH_SQL = """
select health.health_status, health.issues, health.acknowledged_issues, health.is_alerting,
       refresh.refreshed_at
from {health} as health
left join {refresh} as refresh on true
where health.cj_batch_id = %(id)s
"""


@dataclass(frozen=True)
class BatchReport:
    """Everything inspect shows; `as_dict()` is the stable --json form."""

    facts: dict[str, Any]
    grades: list[dict[str, Any]]
    events: list[dict[str, Any]]
    health: dict[str, Any] | None
    rules: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        report = self._facts_dict()
        report["diagnosis"] = diagnose(report, self.rules, load_runbook_sections()).as_dict()
        return report

    def _facts_dict(self) -> dict[str, Any]:
        f = self.facts
        return {
            "cj_batch_id": f["cj_batch_id"],
            "bos_batch_id": f["bos_batch_id"],
            "assignment_id": f["assignment_id"],
            "course_code": f["course_code"],
            "grade_scale": f["grade_scale"],
            "expected_essay_count": f["expected_essay_count"],
            "upload_status": f["upload_status"],
            "cj_state": f["cj_state"],
            "comparisons": {
                "total_budget": f["total_budget"],
                "total_comparisons": f["total_comparisons"],
                "submitted": f["comparisons_submitted"],
                "completed": f["comparisons_completed"],
                "failed": f["comparisons_failed"],
                "partial_scoring_triggered": f["partial_scoring_triggered"],
            },
            "pairs": {
                "total": f["pair_count"],
                "completed": f["pairs_completed"],
                "errored": f["pairs_errored"],
                "pending": f["pairs_pending"],
            },
            "essays": {
                "total": f["essay_count"],
                "students": f["student_count"],
                "anchors_by_flag": f["anchor_count"],
                "anchors_by_metadata": f["metadata_anchor_count"],
                "anchor_flag_mismatches": f["anchor_flag_mismatch_count"],
                "invalid_anchor_metadata": f["invalid_anchor_metadata_count"],
                "registered_anchors": f["registered_anchor_count"],
                "scored_students": f["scored_student_count"],
            },
            "reliability": _number(f["scale_separation_reliability"]),
            "projections": {
                "count": f["projection_count"],
                "on_anchors": f["anchor_projection_count"],
                "misattributed": f["misattributed_projection_count"],
                "students_without": f["students_without_projection_count"],
                "invalid": f["invalid_projection_count"],
                "by_grade": {g["primary_grade"]: g["n"] for g in self.grades},
            },
            "events": [
                {
                    "topic": e["topic"],
                    "event_type": e["event_type"],
                    "aggregate_type": e["aggregate_type"],
                    "aggregate_id": e["aggregate_id"],
                    "correlation_id": e["correlation_id"],
                    "correlation_matches_upload": not e["is_correlation_mismatch"],
                    "published": e["published_at"] is not None,
                }
                for e in self.events
            ],
            "health": self.health,
            "timestamps": {
                "created_at": _iso(f["created_at"]),
                "updated_at": _iso(f["updated_at"]),
                "completed_at": _iso(f["completed_at"]),
                "last_activity_at": _iso(f["last_activity_at"]),
            },
        }


def _number(value: Any) -> float | None:
    return float(value) if value is not None else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def parse_batch_id(raw: str) -> int:
    """A positive int4 batch id, else BatchNotFound (exit 4) with the same message."""
    text = str(raw).strip()
    # ASCII digits only: str.isdigit() also accepts '²' (int() rejects it) and '١' (read as 1)
    if not (text.isascii() and text.isdigit()) or int(text) <= 0 or int(text) > MAX_INT4:
        raise BatchNotFound(f"no CJ batch {raw!r} (a CJ batch id is a positive integer)")
    return int(text)


def load_report(database: Database, cj_batch_id: int) -> BatchReport:
    params = {"id": cj_batch_id}
    with connect(database) as conn:
        conn.row_factory = dict_row
        _require_batch(conn, database, cj_batch_id)
        missing = [name for name in READ_RELATIONS if not relation_exists(conn, name)]
        if missing:
            raise CjHealthError(
                f"{database.display} lacks {monitoring_schema()}.{missing[0]}: the dbt models "
                "are not built there; run `cj-health build` first"
            )
        names = {
            "facts": BATCH_FACTS_VIEW, "states": STATES_VIEW,
            "essay_projections": ESSAY_PROJECTIONS_VIEW, "events": EVENTS_VIEW,
            "outbox": OUTBOX_VIEW, "health": HEALTH_VIEW, "refresh": REFRESH_VIEW,
            "problem_codes": PROBLEM_CODES_VIEW,
        }
        relations = {key: sql.Identifier(monitoring_schema(), name) for key, name in names.items()}
        facts = conn.execute(_sql(FACTS_SQL, relations), params).fetchone()
        if facts is None:
            raise BatchNotFound(f"no CJ batch {cj_batch_id}")
        grades = conn.execute(_sql(GRADES_SQL, relations), params).fetchall()
        events = conn.execute(_sql(EVENTS_SQL, relations), params).fetchall()
        health = _health(conn, relations, params)
        rules = {}
        if relation_exists(conn, PROBLEM_CODES_VIEW):
            rules = {
                row["problem_code"]: row["rule_summary"]
                for row in conn.execute(_sql(RULES_SQL, relations))
            }
    return BatchReport(facts, grades, events, health, rules)


def _sql(text: str, relations: dict[str, sql.Identifier]) -> sql.Composed:
    return sql.SQL(text).format(**{k: v for k, v in relations.items() if "{" + k + "}" in text})


def _require_batch(conn: psycopg.Connection, database: Database, cj_batch_id: int) -> None:
    """BatchNotFound unless the service's upload table holds the batch."""
    uploads = sql.Identifier(source_schema(), "cj_batch_uploads")
    if conn.execute(
        "select to_regclass(%s) is not null as ok", (uploads.as_string(conn),)
    ).fetchone()["ok"] is False:
        raise CjHealthError(
            f"{database.display} has no CJ service tables in schema {source_schema()}"
            " (CJ_SOURCE_SCHEMA); set it to the service's schema"
        )
    found = conn.execute(
        sql.SQL("select 1 from {} where id = %s").format(uploads), (cj_batch_id,)
    ).fetchone()
    if found is None:
        raise BatchNotFound(f"no CJ batch {cj_batch_id}")


def _health(
    conn: psycopg.Connection, relations: dict[str, sql.Identifier], params: dict[str, Any]
) -> dict[str, Any] | None:
    if not (relation_exists(conn, HEALTH_VIEW) and relation_exists(conn, REFRESH_VIEW)):
        return None
    row = conn.execute(_sql(HEALTH_SQL, relations), params).fetchone()
    if row is None:
        return {"status": "NOT_IN_VIEW_YET", "issues": [], "acknowledged_issues": [],
                "is_alerting": None, "refreshed_at": None}
    return {
        "status": row["health_status"],
        "issues": list(row["issues"] or []),
        "acknowledged_issues": list(row["acknowledged_issues"] or []),
        "is_alerting": row["is_alerting"],
        "refreshed_at": _iso(row["refreshed_at"]),
    }


def render_text(report: dict[str, Any]) -> str:
    """The human layout: the incident report's fields, in its order."""
    c, p, e, pr = report["comparisons"], report["pairs"], report["essays"], report["projections"]
    health = report["health"]
    lines = [
        f"CJ batch {report['cj_batch_id']}  (BOS batch {report['bos_batch_id']})",
        f"  assignment {report['assignment_id']}  course {report['course_code']}",
        f"  upload status      {report['upload_status']}",
        f"  CJ state           {report['cj_state'] or '(no state row)'}",
        f"  comparisons        submitted {c['submitted']}  completed {c['completed']}"
        f"  failed {c['failed']}  (budget {c['total_budget']},"
        f" partial scoring triggered: {c['partial_scoring_triggered']})",
        f"  pairs              {p['total']} total: {p['completed']} completed,"
        f" {p['errored']} errored, {p['pending']} pending",
        f"  essays             {e['total']} rows"
        f" (expected essay count {report['expected_essay_count']}):"
        f" {e['students']} students; {e['anchors_by_flag']} anchors by is_anchor column,"
        f" {e['anchors_by_metadata']} by metadata, {e['anchor_flag_mismatches']} mismatched"
        + (f", {e['invalid_anchor_metadata']} unreadable" if e["invalid_anchor_metadata"] else "")
        + f"; {e['registered_anchors']} anchors registered for the assignment",
        f"  grade projections  {pr['count']}"
        + (f" ({', '.join(f'{g}: {n}' for g, n in pr['by_grade'].items())})" if pr["count"] else "")
        + (f"; {pr['on_anchors']} on anchors" if pr["on_anchors"] else "")
        + (f"; {pr['misattributed']} misattributed" if pr["misattributed"] else "")
        + (f"; {pr['students_without']} students without one" if pr["students_without"] else ""),
        f"  outbox events      {len(report['events'])}",
    ]
    for event in report["events"]:
        match = "matches upload" if event["correlation_matches_upload"] else "DIFFERS from upload"
        state = "published" if event["published"] else "unpublished"
        lines.append(f"    - {event['topic']} ({state}; correlation id {match})")
    if health is None:
        lines.append("  health             unknown: monitoring views not built (cj-health build)")
    else:
        issues = ", ".join(health["issues"]) or "none"
        lines.append(
            f"  health             {health['status']}  issues: {issues}"
            f"  (view refreshed {health['refreshed_at']})"
        )
    t = report["timestamps"]
    lines += [
        f"  created_at         {t['created_at']}",
        f"  completed_at       {t['completed_at'] or 'NULL'}",
        f"  last_activity_at   {t['last_activity_at']}",
    ]
    lines += render_diagnosis(report["diagnosis"])
    # The service's text (ids, course code, topics) shown escaped: it is not ours.
    return "\n".join(escape(line) for line in lines)


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)
