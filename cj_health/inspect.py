"""`cj-health inspect`: one batch's facts, laid out like the Batch 20 incident report.

Facts come straight from the CJ service tables (parameterised queries), so inspect works even
when the monitoring views are missing or stale; the verdict comes from `cj_batch_health`.
No essay text is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from cj_health.db import Database, connect, monitoring_schema, source_schema
from cj_health.errors import BatchNotFound, CjHealthError
from cj_health.monitoring_tables import REFRESH_VIEW

MAX_INT4 = 2_147_483_647

BATCH_SQL = """
select u.id as cj_batch_id, u.bos_batch_id, u.event_correlation_id, u.assignment_id,
       u.course_code, u.language, u.expected_essay_count, u.status::text as upload_status,
       s.state::text as cj_state, s.total_budget, s.total_comparisons,
       s.submitted_comparisons, s.completed_comparisons, s.failed_comparisons,
       s.partial_scoring_triggered, s.current_iteration,
       u.created_at, u.updated_at, u.completed_at, s.last_activity_at
from cj_batch_uploads u
left join cj_batch_states s on s.batch_id = u.id
where u.id = %(id)s
"""

ESSAYS_SQL = """
select count(*) as total,
       count(*) filter (where is_anchor) as anchors_by_flag,
       count(*) filter (where lower(processing_metadata->>'is_anchor') = 'true')
           as anchors_by_metadata,
       count(*) filter (
           where is_anchor is distinct from (lower(processing_metadata->>'is_anchor') = 'true')
             and processing_metadata->>'is_anchor' is not null) as flag_mismatches,
       count(*) filter (where current_bt_score is not null) as scored
from cj_processed_essays where cj_batch_id = %(id)s
"""

PAIRS_SQL = """
select count(*) as total,
       count(*) filter (where winner in ('essay_a', 'essay_b')) as completed,
       count(*) filter (where winner = 'error') as errored,
       count(*) filter (where winner is null) as pending
from cj_comparison_pairs where cj_batch_id = %(id)s
"""

PROJECTIONS_SQL = """
select p.primary_grade, count(*) as n, count(*) filter (where e.is_anchor) as on_anchors,
       count(*) filter (where e.cj_batch_id is distinct from p.cj_batch_id) as misattributed
from grade_projections p
left join cj_processed_essays e on e.els_essay_id = p.els_essay_id
where p.cj_batch_id = %(id)s
group by p.primary_grade order by p.primary_grade
"""

EVENTS_SQL = """
select topic, event_type, aggregate_type, aggregate_id,
       event_data->>'correlation_id' as correlation_id, created_at, published_at
from event_outbox
where (aggregate_type in ('cj_batch', 'resource_consumption') and aggregate_id = %(bos)s)
   or (aggregate_type = 'assessment_result' and aggregate_id = %(id_text)s)
order by created_at, topic
"""


@dataclass(frozen=True)
class BatchReport:
    """Everything inspect shows; `as_dict()` is the stable --json form."""

    batch: dict[str, Any]
    essays: dict[str, Any]
    pairs: dict[str, Any]
    projections: list[dict[str, Any]]
    events: list[dict[str, Any]]
    health: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        b = self.batch
        return {
            "cj_batch_id": b["cj_batch_id"],
            "bos_batch_id": b["bos_batch_id"],
            "assignment_id": b["assignment_id"],
            "course_code": b["course_code"],
            "expected_essay_count": b["expected_essay_count"],
            "upload_status": b["upload_status"],
            "cj_state": b["cj_state"],
            "comparisons": {
                "total_budget": b["total_budget"],
                "total_comparisons": b["total_comparisons"],
                "submitted": b["submitted_comparisons"],
                "completed": b["completed_comparisons"],
                "failed": b["failed_comparisons"],
                "partial_scoring_triggered": b["partial_scoring_triggered"],
            },
            "pairs": dict(self.pairs),
            "essays": {
                "total": self.essays["total"],
                "students": self.essays["total"] - self.essays["anchors_by_flag"],
                "anchors_by_flag": self.essays["anchors_by_flag"],
                "anchors_by_metadata": self.essays["anchors_by_metadata"],
                "anchor_flag_mismatches": self.essays["flag_mismatches"],
                "scored": self.essays["scored"],
            },
            "projections": {
                "count": sum(p["n"] for p in self.projections),
                "on_anchors": sum(p["on_anchors"] for p in self.projections),
                "misattributed": sum(p["misattributed"] for p in self.projections),
                "by_grade": {p["primary_grade"]: p["n"] for p in self.projections},
            },
            "events": [
                {
                    "topic": e["topic"],
                    "event_type": e["event_type"],
                    "aggregate_type": e["aggregate_type"],
                    "aggregate_id": e["aggregate_id"],
                    "correlation_id": e["correlation_id"],
                    "correlation_matches_upload": e["correlation_id"]
                    == b["event_correlation_id"],
                    "published": e["published_at"] is not None,
                }
                for e in self.events
            ],
            "health": self.health,
            "timestamps": {
                "created_at": _iso(b["created_at"]),
                "updated_at": _iso(b["updated_at"]),
                "completed_at": _iso(b["completed_at"]),
                "last_activity_at": _iso(b["last_activity_at"]),
            },
        }


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
    params = {"id": cj_batch_id, "id_text": str(cj_batch_id)}
    with connect(database) as conn:
        conn.row_factory = dict_row
        schema = source_schema()
        conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(schema)))
        if conn.execute("select to_regclass('cj_batch_uploads')").fetchone()["to_regclass"] is None:
            raise CjHealthError(
                f"{database.display} has no CJ service tables in schema {schema}"
                " (CJ_SOURCE_SCHEMA); set it to the service's schema"
            )
        batch = conn.execute(BATCH_SQL, params).fetchone()
        if batch is None:
            raise BatchNotFound(f"no CJ batch {cj_batch_id}")
        params["bos"] = batch["bos_batch_id"]
        essays = conn.execute(ESSAYS_SQL, params).fetchone()
        pairs = conn.execute(PAIRS_SQL, params).fetchone()
        projections = conn.execute(PROJECTIONS_SQL, params).fetchall()
        events = conn.execute(EVENTS_SQL, params).fetchall()
        health = _health(conn, cj_batch_id)
    return BatchReport(batch, essays, pairs, projections, events, health)


def _health(conn, cj_batch_id: int) -> dict[str, Any] | None:
    view = sql.Identifier(monitoring_schema(), "cj_batch_health")
    exists = conn.execute(
        "select to_regclass(%s) is not null as ok",
        (f'"{monitoring_schema()}"."cj_batch_health"',),
    ).fetchone()
    if not exists["ok"]:
        return None
    row = conn.execute(
        sql.SQL(
            "select health.health_status, health.issues, health.is_alerting,"
            " refresh.refreshed_at from {} as health"
            " left join {} as refresh on true where health.cj_batch_id = %s"
        ).format(view, sql.Identifier(monitoring_schema(), REFRESH_VIEW)),
        (cj_batch_id,),
    ).fetchone()
    if row is None:
        return {"status": "NOT_IN_VIEW_YET", "issues": [], "is_alerting": None,
                "refreshed_at": None}
    return {
        "status": row["health_status"],
        "issues": list(row["issues"] or []),
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
        f" {e['anchors_by_flag']} anchors by is_anchor column,"
        f" {e['anchors_by_metadata']} by metadata, {e['anchor_flag_mismatches']} mismatched",
        f"  grade projections  {pr['count']}"
        + (f" ({', '.join(f'{g}: {n}' for g, n in pr['by_grade'].items())})" if pr["count"] else "")
        + (f"; {pr['on_anchors']} on anchors" if pr["on_anchors"] else "")
        + (f"; {pr['misattributed']} misattributed" if pr["misattributed"] else ""),
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
    return "\n".join(lines)


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)
