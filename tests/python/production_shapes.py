"""A production-shaped CJ database, written from the service's own facts, not by the project.

`load_production_shapes(database)` creates production's schema at head
(fixtures/cj_service_head.sql) and inserts one batch per shape the service leaves behind,
with plain SQL and independent of the ENG5 runner and the fault catalogue. Each shape names
the verdict the monitoring must give it (`SHAPES`): healthy shapes must not alert, broken
ones must alert with their code.

Facts used: students carry `{"is_anchor": false}` (HEAD merges it after insert; 11-14 inserted
it), anchors `ANCHOR_<ref id>_<8 hex>` with the HEAD or the 11-14 metadata; anchors only
where the batch has an assignment with references on its instruction's scale; three outbox
rows per finished batch (completion, result with event_type `assessment.result.published`,
resource), event_data = envelope + top-level `topic`, correlation_id = the upload's; the
single-essay finalizer sets COMPLETE_INSUFFICIENT_ESSAYS and COMPLETED without completed_at;
the batch monitor's forced recovery leaves pending pairs; its failure leaves the upload
status unchanged with state FAILED and one failure event; the relay gives up at retry 5.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import psycopg
from conftest import load_production_head

from cj_health.db import Database, connect

ENG5 = ("eng5_np_legacy_9_step", ["F+", "E-", "D+", "C+", "B", "A"])
SWEDISH = ("swedish_8_anchor", ["F", "E", "D", "C", "B", "A"])
ASSIGNMENT_ENG5 = "assignment-eng5"
ASSIGNMENT_SWEDISH = "assignment-swedish"
ASSIGNMENT_NO_ANCHORS = "assignment-without-anchors"


@dataclass(frozen=True)
class Shape:
    name: str
    expected_code: str | None  # the problem code that must alert; None: must not alert


SHAPES = [
    Shape("head_assignment_eng5", None),
    Shape("nov14_assignment_swedish", None),
    Shape("guest", None),
    Shape("assignment_without_anchors", None),
    Shape("single_essay", None),
    Shape("forced_recovery_pending_pairs", None),
    Shape("monitor_failed", None),
    Shape("small_fully_compared", None),
    Shape("events_in_flight", None),
    Shape("batch20_replica", "STUCK_FINALIZATION"),
    Shape("relay_gave_up", "EVENTS_UNPUBLISHED"),
    Shape("events_unpublished_too_long", "EVENTS_UNPUBLISHED"),
]


def _envelope(topic: str, correlation_id: str, data: dict, event_type: str | None = None) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type or topic,
        "event_timestamp": "2025-11-14T10:00:00Z",
        "source_service": "cj_assessment_service",
        "schema_version": 1,
        "correlation_id": correlation_id,
        "data_schema_uri": None,
        "data": data,
        "metadata": {},
        "topic": topic,
    }


def _outbox(
    conn: psycopg.Connection,
    *,
    aggregate_id: str,
    aggregate_type: str,
    event_type: str,
    topic: str,
    envelope: dict,
    age: str,
    published: bool,
    retry_count: int = 0,
) -> None:
    conn.execute(
        "insert into event_outbox (aggregate_id, aggregate_type, event_type, event_data,"
        " event_key, topic, created_at, published_at, retry_count, last_error)"
        " values (%s, %s, %s, %s::json, %s, %s, now() - %s::interval,"
        " case when %s then now() - %s::interval + interval '2 seconds' end, %s,"
        " case when %s >= 5 then 'KafkaTimeoutError' end)",
        (aggregate_id, aggregate_type, event_type, json.dumps(envelope), aggregate_id, topic,
         age, published, age, retry_count, retry_count),
    )


def _finalization_events(
    conn: psycopg.Connection, cj_batch_id: int, bos: str, correlation: str, *, age: str,
    published: bool = True, result_retries: int = 0,
) -> None:
    completion = "huleedu.cj_assessment.completed.v1"
    result = "huleedu.assessment.result.published.v1"
    resource = "huleedu.resource.consumption.v1"
    _outbox(conn, aggregate_id=bos, aggregate_type="cj_batch", event_type=completion,
            topic=completion, age=age, published=published,
            envelope=_envelope(completion, correlation, {"entity_id": bos,
                               "cj_assessment_job_id": str(cj_batch_id)}))
    _outbox(conn, aggregate_id=str(cj_batch_id), aggregate_type="assessment_result",
            event_type="assessment.result.published", topic=result, age=age,
            published=published and result_retries < 5, retry_count=result_retries,
            envelope=_envelope(result, correlation, {"batch_id": bos,
                               "cj_assessment_job_id": str(cj_batch_id)}, result))
    _outbox(conn, aggregate_id=bos, aggregate_type="resource_consumption",
            event_type=resource, topic=resource, age=age, published=published,
            envelope=_envelope(resource, correlation, {"entity_id": bos,
                               "resource_type": "cj_comparison"}))


def _register(conn: psycopg.Connection, assignment: str, scale: tuple[str, list[str]]) -> list:
    conn.execute(
        "insert into assessment_instructions (assignment_id, instructions_text, grade_scale)"
        " values (%s, 'instructions', %s)",
        (assignment, scale[0]),
    )
    return [
        conn.execute(
            "insert into anchor_essay_references (grade, text_storage_id, assignment_id,"
            " grade_scale, anchor_label) values (%s, %s, %s, %s, %s) returning id, grade",
            (grade, f"anchor-text-{assignment}-{grade}", assignment, scale[0], grade),
        ).fetchone()
        for grade in scale[1]
    ]


def _batch(
    conn: psycopg.Connection,
    *,
    assignment: str | None,
    status: str,
    state: str,
    students: int,
    anchors: list | None = None,
    scale: str = "swedish_8_anchor",
    metadata_shape: str = "head",
    age: str = "2 hours",
    completed: bool = True,
    project: bool = True,
    pending_pairs: int = 0,
    spread: float = 1.0,
    se: float = 0.2,
    course_code: str = "ENG5",
) -> tuple[int, str, str]:
    bos, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    anchors = anchors or []
    cj_batch_id = conn.execute(
        "insert into cj_batch_uploads (bos_batch_id, event_correlation_id, language,"
        " course_code, expected_essay_count, status, created_at, updated_at, completed_at,"
        " assignment_id, user_id) values (%s, %s, 'en', %s, %s, %s,"
        " (now() at time zone 'utc') - %s::interval - interval '10 minutes',"
        " (now() at time zone 'utc') - %s::interval,"
        " case when %s then (now() at time zone 'utc') - %s::interval end, %s, 'teacher-1')"
        " returning id",
        (bos, correlation, course_code, students + len(anchors), status, age, age, completed,
         age, assignment),
    ).fetchone()[0]
    essays: list[tuple[str, bool]] = []
    for index in range(students):
        essay_id = str(uuid.uuid4())
        score = spread * (index - (students - 1) / 2) if students > 1 else 0.0
        conn.execute(
            "insert into cj_processed_essays (els_essay_id, cj_batch_id, text_storage_id,"
            " assessment_input_text, current_bt_score, current_bt_se, comparison_count,"
            " processing_metadata, is_anchor) values (%s, %s, %s, 'student essay text',"
            " %s, %s, 4, %s::json, false)",
            (essay_id, cj_batch_id, f"text-{essay_id}", score, se,
             json.dumps({"is_anchor": False})),
        )
        essays.append((essay_id, False))
    for ref_id, grade in anchors:
        essay_id = f"ANCHOR_{ref_id}_{uuid.uuid4().hex[:8]}"
        metadata: dict[str, object] = {"is_anchor": True, "known_grade": grade,
                                       "anchor_ref_id": str(ref_id)}
        if metadata_shape == "head":
            metadata |= {"text_storage_id": f"anchor-text-{grade}", "anchor_label": grade}
        conn.execute(
            "insert into cj_processed_essays (els_essay_id, cj_batch_id, text_storage_id,"
            " assessment_input_text, current_bt_score, current_bt_se, comparison_count,"
            " processing_metadata, is_anchor) values (%s, %s, %s, 'anchor essay text',"
            " 0.0, 0.3, 4, %s::json, true)",
            (essay_id, cj_batch_id, f"anchor-{essay_id}", json.dumps(metadata)),
        )
        essays.append((essay_id, True))
    pairs = [(essays[i][0], essays[i + 1][0]) for i in range(len(essays) - 1)]
    for number, (a, b) in enumerate(pairs):
        pending = number < pending_pairs
        conn.execute(
            "insert into cj_comparison_pairs (cj_batch_id, essay_a_els_id, essay_b_els_id,"
            " prompt_text, winner, confidence, submitted_at, completed_at,"
            " processing_metadata, pair_generation_mode)"
            " values (%s, %s, %s, 'which is better?', %s, %s, now() - interval '3 hours',"
            " case when %s then null else now() - interval '150 minutes' end,"
            " %s::json, 'coverage')",
            (cj_batch_id, a, b, None if pending else "essay_a", None if pending else 0.8,
             pending, json.dumps({"provider": "openai", "model": "gpt-5.1"})),
        )
    conn.execute(
        "insert into cj_batch_states (batch_id, state, total_comparisons,"
        " submitted_comparisons, completed_comparisons, failed_comparisons, last_activity_at,"
        " current_iteration, total_budget) values (%s, %s, %s, %s, %s, 0,"
        " now() - %s::interval, 1, %s)",
        (cj_batch_id, state, len(pairs), len(pairs), len(pairs) - pending_pairs, age,
         max(len(pairs), 1)),
    )
    if project and len({grade for _, grade in anchors}) >= 2:
        for essay_id, is_anchor in essays:
            if not is_anchor:
                conn.execute(
                    "insert into grade_projections (els_essay_id, cj_batch_id, primary_grade,"
                    " confidence_score, confidence_label, calculation_metadata, grade_scale)"
                    " values (%s, %s, %s, 0.8, 'HIGH', '{}'::json, %s)",
                    (essay_id, cj_batch_id, anchors[0][1], scale),
                )
    return cj_batch_id, bos, correlation


def load_production_shapes(database: Database) -> dict[str, int]:
    """Production's schema and one batch per shape of SHAPES; returns shape -> cj_batch_id."""
    load_production_head(database)
    ids: dict[str, int] = {}
    with connect(database) as conn:
        eng5 = _register(conn, ASSIGNMENT_ENG5, ENG5)
        swedish = _register(conn, ASSIGNMENT_SWEDISH, SWEDISH)
        conn.execute(
            "insert into assessment_instructions (course_id, instructions_text, grade_scale)"
            " values ('ENG6', 'course instructions', 'swedish_8_anchor')"
        )

        def finished(name: str, **kwargs: object) -> None:
            events = kwargs.pop("events", {})
            cj_batch_id, bos, correlation = _batch(conn, **kwargs)  # type: ignore[arg-type]
            _finalization_events(conn, cj_batch_id, bos, correlation,
                                 age=str(kwargs.get("age", "2 hours")), **events)
            ids[name] = cj_batch_id

        finished("head_assignment_eng5", assignment=ASSIGNMENT_ENG5, status="COMPLETE_STABLE",
                 state="COMPLETED", students=8, anchors=eng5, scale=ENG5[0])
        finished("nov14_assignment_swedish", assignment=ASSIGNMENT_SWEDISH,
                 status="COMPLETE_MAX_COMPARISONS", state="COMPLETED", students=8,
                 anchors=swedish, metadata_shape="nov14")
        finished("guest", assignment=None, status="COMPLETE_STABLE", state="COMPLETED",
                 students=8)
        finished("assignment_without_anchors", assignment=ASSIGNMENT_NO_ANCHORS,
                 status="COMPLETE_STABLE", state="COMPLETED", students=8, course_code="ENG6")
        finished("single_essay", assignment=None, status="COMPLETE_INSUFFICIENT_ESSAYS",
                 state="COMPLETED", students=1, completed=False)
        finished("forced_recovery_pending_pairs", assignment=ASSIGNMENT_ENG5,
                 status="COMPLETE_FORCED_RECOVERY", state="COMPLETED", students=8,
                 anchors=eng5, scale=ENG5[0], pending_pairs=2)
        finished("small_fully_compared", assignment=None, status="COMPLETE_STABLE",
                 state="COMPLETED", students=4, spread=0.1, se=2.0)
        finished("events_in_flight", assignment=None, status="COMPLETE_STABLE",
                 state="COMPLETED", students=8, age="1 minute", events={"published": False})
        finished("relay_gave_up", assignment=None, status="COMPLETE_STABLE",
                 state="COMPLETED", students=8, events={"result_retries": 5})
        finished("events_unpublished_too_long", assignment=None, status="COMPLETE_STABLE",
                 state="COMPLETED", students=8, age="30 minutes", events={"published": False})

        failed_id, bos, correlation = _batch(
            conn, assignment=ASSIGNMENT_ENG5, status="PERFORMING_COMPARISONS", state="FAILED",
            students=8, anchors=eng5, scale=ENG5[0], completed=False, project=False,
            pending_pairs=5, age="5 hours",
        )
        failed = "huleedu.cj_assessment.failed.v1"
        _outbox(conn, aggregate_id=bos, aggregate_type="cj_batch", event_type=failed,
                topic=failed, age="5 hours", published=True,
                envelope=_envelope(failed, str(uuid.uuid4()), {"entity_id": bos},
                                   "cj_assessment.failed.v1"))
        ids["monitor_failed"] = failed_id

        # Batch 20: COMPLETE_STABLE, still WAITING_CALLBACKS, anchors by metadata only.
        wedged_id, _, _ = _batch(
            conn, assignment=ASSIGNMENT_ENG5, status="COMPLETE_STABLE",
            state="WAITING_CALLBACKS", students=3, anchors=eng5, scale=ENG5[0],
            completed=False, project=False, age="20 minutes",
        )
        conn.execute(
            "update cj_processed_essays set is_anchor = false where cj_batch_id = %s",
            (wedged_id,),
        )
        conn.execute(
            "update cj_batch_states set partial_scoring_triggered = true where batch_id = %s",
            (wedged_id,),
        )
        ids["batch20_replica"] = wedged_id
        conn.commit()
    return ids
