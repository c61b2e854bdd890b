"""A production-shaped CJ database, written from the service's own facts, not by the project.

`load_production_shapes(database)` creates production's schema at head
(fixtures/cj_service_head.sql) and inserts one batch per shape the service leaves behind,
with plain SQL and independent of the ENG5 runner and the fault catalogue. Each shape names
the verdict the monitoring must give it and why (`SHAPES`): healthy, in-progress and failed
shapes must not alert, broken ones must alert with exactly their codes. Together the shapes
use every label of `cj_batch_status_enum` and `cj_batch_state_enum`.

Facts used (the service at head and on 2025-11-14):
- batches: a new batch is PENDING + INITIALIZING with counters 0, iteration 0 and no budget;
  FETCHING_CONTENT while essays are fetched; PERFORMING_COMPARISONS with GENERATING_PAIRS and
  WAITING_CALLBACKS; `total_budget` (head only) is the original budget, `total_comparisons`
  cumulative over iterations; on 2025-11-14 the iteration started at 1 and there was no budget;
- essays: head inserts students without metadata and merges `{"is_anchor": false}` in a
  later session (2025-11-14 inserted it); anchors `ANCHOR_<ref id>_<8 hex>` only where the
  batch has an assignment with references on its instruction's scale, with the head or the
  2025-11-14 metadata (no `anchor_label`, `text_storage_id`);
- pairs: callbacks write `provider`/`model`; an errored pair has winner `error` and its error
  columns; counters: completed = pairs with a winner, failed = errored pairs;
- finalization writes three outbox rows (completion, result, resource), each committed on its
  own after the projections; at head a crash leaves SCORING with whatever was committed, on
  2025-11-14 the caller committed ERROR_PROCESSING with the state still SCORING;
- `finalize_failure`: ERROR_PROCESSING + FAILED + completed_at + `failed_reason` + one
  failure event with the caller's correlation id; the single-essay finalizer:
  COMPLETE_INSUFFICIENT_ESSAYS + COMPLETED without completed_at or a BT score;
- the workflow's error path sets ERROR_PROCESSING wherever the state is, and the request
  handler sends a failure event with job id `INITIALIZATION_FAILED`;
- the batch monitor (every 5 minutes, 4 hours idle): >= 80 % forces SCORING
  (`forced_to_scoring`) and finalizes with COMPLETE_FORCED_RECOVERY, pending pairs left; < 80 %
  sets FAILED with the upload status unchanged and sends a failure event whose envelope
  event_type is `cj_assessment.failed.v1` with metadata null; the completion sweep finalizes
  WAITING_CALLBACKS batches whose callbacks are all in;
- the relay gives up at retry 5; ERROR_ESSAY_PROCESSING and CANCELLED are labels the service
  reads as terminal but no code path at head writes (an older release or an operator does).

Every outbox row is the event as production writes it (tests/python/contracts.py checks
them): the three finalization events are built by `python_fix.events.build_outbox_rows` from
the batch's rows as the service reads them back (ranking by BT score, projections, the
pairs' model), the failure events here.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from conftest import load_production_head
from contracts import FAILED_TOPIC, MONITOR_FAILED_EVENT_TYPE

from cj_health.db import Database, connect
from python_fix.events import BatchFacts, Grade, OutboxRow, RankedEssay, build_outbox_rows

ENG5 = ("eng5_np_legacy_9_step", ["F+", "E-", "D+", "C+", "B", "A"])
SWEDISH = ("swedish_8_anchor", ["F", "E", "D", "C", "B", "A"])
ASSIGNMENT_ENG5 = "assignment-eng5"
ASSIGNMENT_SWEDISH = "assignment-swedish"
ASSIGNMENT_NO_ANCHORS = "assignment-without-anchors"
HEAD_MODEL = ("openai", "gpt-5.1")
NOV14_SETTINGS_MODEL = ("openai", "gpt-5-mini-2025-08-07")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass(frozen=True)
class Shape:
    name: str
    verdict: str  # health_status: HEALTHY, IN_PROGRESS, FAILED, or the first problem code
    reason: str
    issues: tuple[str, ...] = ()  # exactly the codes the batch must show; () must not alert


SHAPES = [
    # Finished as the service finishes batches.
    Shape("head_assignment_eng5", "HEALTHY",
          "head finalization: anchors flagged, every student projected, three events"),
    Shape("nov14_assignment_swedish", "HEALTHY",
          "2025-11-14 rows (anchor metadata without anchor_label, iteration 1, no budget)"),
    Shape("guest", "HEALTHY", "no assignment: no anchors and no projections by design"),
    Shape("assignment_without_anchors", "HEALTHY",
          "the assignment registered no anchors: nothing to project"),
    Shape("single_essay", "HEALTHY",
          "one student: COMPLETE_INSUFFICIENT_ESSAYS without completed_at or a BT score"),
    Shape("forced_recovery_pending_pairs", "HEALTHY",
          "batch monitor >= 80 %: forced to SCORING, finalized COMPLETE_FORCED_RECOVERY"),
    Shape("small_fully_compared", "HEALTHY",
          "4 students: too few to judge reliability, however large the errors"),
    Shape("errored_pairs", "HEALTHY",
          "LLM errors are counted as failed comparisons; the rest scored and projected"),
    Shape("completion_sweep", "HEALTHY",
          "the monitor's sweep finalized it in its second iteration; budget below the total"),
    Shape("events_in_flight", "HEALTHY", "events written a minute ago, the relay not yet run"),
    # Still working.
    Shape("fresh", "IN_PROGRESS", "just created: PENDING, INITIALIZING, no essays, no budget"),
    Shape("fetching_content", "IN_PROGRESS",
          "essays being fetched; head students before their is_anchor merge"),
    Shape("generating_pairs", "IN_PROGRESS", "the first pairs are being generated"),
    Shape("mid_comparisons", "IN_PROGRESS", "callbacks arriving, half the pairs pending"),
    Shape("nov14_waiting_callbacks", "IN_PROGRESS",
          "2025-11-14 batch waiting for callbacks: iteration 1, no budget"),
    Shape("awaiting_completion_sweep", "IN_PROGRESS",
          "every callback in, 4 minutes idle: the monitor's sweep comes every 5 minutes"),
    Shape("scoring", "IN_PROGRESS", "finalize_scoring committed SCORING a minute ago"),
    # Failed and told so: visible as FAILED, nothing to page about.
    Shape("finalize_failure", "FAILED",
          "finalize_failure (low success rate): ERROR_PROCESSING, FAILED, one failure event"),
    Shape("monitor_failed", "FAILED",
          "batch monitor < 80 %: FAILED with the upload status unchanged, one failure event"),
    Shape("workflow_error_before_pairs", "FAILED",
          "the workflow failed before pairs: ERROR_PROCESSING, state left INITIALIZING"),
    Shape("essay_processing_error", "FAILED",
          "ERROR_ESSAY_PROCESSING is terminal, whatever state it left behind"),
    Shape("cancelled", "FAILED", "CANCELLED on purpose, pairs left pending"),
    # Broken: each must page.
    Shape("batch20_replica", "STUCK_FINALIZATION",
          "Batch 20: COMPLETE_STABLE in WAITING_CALLBACKS, anchors by metadata only",
          ("STUCK_FINALIZATION", "COMPLETION_INCONSISTENT", "ANCHOR_FLAG_MISMATCH",
           "NO_ANCHORS")),
    Shape("head_finalizer_crashed", "SCORING_TOO_LONG",
          "head finalize_scoring died after the projections and the first event",
          ("SCORING_TOO_LONG",)),
    Shape("nov14_finalizer_error", "SCORING_TOO_LONG",
          "2025-11-14 finalizer error: ERROR_PROCESSING committed, state left SCORING, no "
          "events", ("SCORING_TOO_LONG",)),
    Shape("stalled_callbacks", "STALLED",
          "5 hours without a callback: the monitor should have acted after 4", ("STALLED",)),
    Shape("relay_gave_up", "EVENTS_UNPUBLISHED",
          "the relay gave up on the result event at retry 5", ("EVENTS_UNPUBLISHED",)),
    Shape("events_unpublished_too_long", "EVENTS_UNPUBLISHED",
          "three events unpublished for 30 minutes", ("EVENTS_UNPUBLISHED",)),
]  # fmt: skip


def _outbox(
    conn: psycopg.Connection,
    row: OutboxRow,
    *,
    age: str,
    published: bool,
    retry_count: int = 0,
) -> None:
    conn.execute(
        "insert into event_outbox (aggregate_id, aggregate_type, event_type, event_data,"
        " event_key, topic, created_at, published_at, retry_count, last_error)"
        " values (%s, %s, %s, %s::json, %s, %s, now() - %s::interval,"
        " case when %s then now() - %s::interval + interval '2 seconds' end, %s,"
        " case when %s > 0 then 'KafkaTimeoutError' end)",
        (row.aggregate_id, row.aggregate_type, row.event_type, json.dumps(row.event_data),
         row.aggregate_id, row.topic, age, published, age, retry_count, retry_count),
    )  # fmt: skip


def _batch_facts(conn: psycopg.Connection, cj_batch_id: int) -> BatchFacts:
    bos, correlation, assignment, course, user, org, created = conn.execute(
        "select bos_batch_id, event_correlation_id, assignment_id, course_code, user_id,"
        " org_id, created_at from cj_batch_uploads where id = %s",
        (cj_batch_id,),
    ).fetchone()
    return BatchFacts(cj_batch_id, bos, uuid.UUID(correlation), assignment, course, user, org,
                      created)  # fmt: skip


def _finalization_rows(
    conn: psycopg.Connection, cj_batch_id: int, *, era: str, traceparent: bool = False
) -> list[OutboxRow]:
    """The three rows the dual event publisher writes, from the rows as the service reads
    them back: the ranking (BT score descending, nulls last; anchors by the `ANCHOR_`
    prefix), the projections, and the most frequent model of the pairs without an error
    (head) or the settings' model (2025-11-14)."""
    facts = _batch_facts(conn, cj_batch_id)
    essays = conn.execute(
        "select els_essay_id, current_bt_score from cj_processed_essays where cj_batch_id = %s"
        " order by current_bt_score desc nulls last, els_essay_id",
        (cj_batch_id,),
    ).fetchall()
    ranking = [
        RankedEssay(essay_id, rank, score, essay_id.startswith("ANCHOR_"))
        for rank, (essay_id, score) in enumerate(essays, start=1)
    ]
    grades = {
        essay_id: Grade(grade, score, label)
        for essay_id, grade, score, label in conn.execute(
            "select els_essay_id, primary_grade, confidence_score, confidence_label"
            " from grade_projections where cj_batch_id = %s",
            (cj_batch_id,),
        ).fetchall()
    }
    models = Counter(
        (metadata["provider"], metadata["model"])
        for (metadata,) in conn.execute(
            "select processing_metadata from cj_comparison_pairs"
            " where cj_batch_id = %s and error_code is null and processing_metadata is not null",
            (cj_batch_id,),
        ).fetchall()
    )
    if era == "nov14":
        model = NOV14_SETTINGS_MODEL
    else:
        model = models.most_common(1)[0][0] if models else HEAD_MODEL
    completed_at = conn.execute(
        "select coalesce(completed_at, updated_at) from cj_batch_uploads where id = %s",
        (cj_batch_id,),
    ).fetchone()[0].replace(tzinfo=UTC)
    rows = build_outbox_rows(facts, ranking, grades, model, now=completed_at)
    if era == "nov14":  # AssessmentResultV1.assignment_id is a head-only field
        rows[1].event_data["data"].pop("assignment_id")
    if traceparent:  # the publisher adds the active span's context to the metadata
        for row in rows:
            row.event_data["metadata"] = {"traceparent": TRACEPARENT, "tracestate": ""}
    return rows


def _failure_row(
    conn: psycopg.Connection,
    cj_batch_id: int,
    *,
    correlation_id: str,
    error_info: dict[str, Any],
    job_id: str | None = None,
    by_monitor: bool = False,
) -> OutboxRow:
    """CJAssessmentFailedV1 as `finalize_failure`, the batch monitor (envelope event_type
    `cj_assessment.failed.v1`, metadata null) or the request handler sends it."""
    facts = _batch_facts(conn, cj_batch_id)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    data = {
        "event_name": "cj_assessment.failed",
        "entity_id": facts.bos_batch_id,
        "entity_type": "batch",
        "parent_id": None,
        "timestamp": now,
        "status": "failed_critically",
        "system_metadata": {
            "entity_id": facts.bos_batch_id,
            "entity_type": "batch",
            "parent_id": None,
            "timestamp": now,
            "processing_stage": "failed",
            "started_at": None,
            "completed_at": now,
            "event": "cj_assessment.failed",
            "error_info": error_info,
        },
        "cj_assessment_job_id": job_id or str(cj_batch_id),
    }
    envelope = {
        "event_id": str(uuid.uuid4()),
        "event_type": MONITOR_FAILED_EVENT_TYPE if by_monitor else FAILED_TOPIC,
        "event_timestamp": now,
        "source_service": "cj_assessment_service",
        "schema_version": 1,
        "correlation_id": correlation_id,
        "data_schema_uri": None,
        "data": data,
        "metadata": None if by_monitor else {},
        "topic": FAILED_TOPIC,
    }
    return OutboxRow(FAILED_TOPIC, FAILED_TOPIC, "cj_batch", facts.bos_batch_id, envelope)


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


@dataclass(frozen=True)
class Pairs:
    """The comparison pairs of a batch: a chain over its essays, the first `pending` without
    a callback, the next `errored` with an LLM error, the rest judged."""

    pending: int = 0
    errored: int = 0
    generated: bool = True  # False: no pairs yet


@dataclass(frozen=True)
class Counters:
    """cj_batch_states beyond the state: None takes the value production's code would."""

    iteration: int = 1
    budget: int | None = -1  # -1: the number of pairs; None: no budget (2025-11-14)
    metadata: dict[str, Any] | None = None


def _batch(
    conn: psycopg.Connection,
    *,
    assignment: str | None,
    status: str,
    state: str,
    students: int,
    anchors: list | None = None,
    scale: str = "swedish_8_anchor",
    era: str = "head",
    age: str = "2 hours",
    completed: bool = True,
    project: bool = True,
    pairs: Pairs | None = None,
    counters: Counters | None = None,
    spread: float = 1.0,
    se: float = 0.2,
    scored: bool = True,
    student_metadata: bool = True,
    upload_metadata: dict[str, Any] | None = None,
    course_code: str = "ENG5",
) -> int:
    bos, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    anchors = anchors or []
    pairs, counters = pairs or Pairs(), counters or Counters()
    metadata = {
        "student_prompt_storage_id": f"prompt-{bos[:8]}",
        "judge_rubric_storage_id": f"rubric-{bos[:8]}",
        "original_request": {"assignment_id": assignment, "language": "en",
                             "course_code": course_code, "user_id": "teacher-1"},
    } | (upload_metadata or {})  # fmt: skip
    cj_batch_id = conn.execute(
        "insert into cj_batch_uploads (bos_batch_id, event_correlation_id, language,"
        " course_code, expected_essay_count, status, created_at, updated_at, completed_at,"
        " processing_metadata, assignment_id, user_id, org_id) values (%s, %s, 'en', %s, %s,"
        " %s, (now() at time zone 'utc') - %s::interval - interval '10 minutes',"
        " (now() at time zone 'utc') - %s::interval,"
        " case when %s then (now() at time zone 'utc') - %s::interval end, %s::json, %s,"
        " 'teacher-1', 'school-1') returning id",
        (bos, correlation, course_code, students + len(anchors), status, age, age, completed,
         age, json.dumps(metadata), assignment),
    ).fetchone()[0]  # fmt: skip
    essays: list[str] = []
    for index in range(students):
        essay_id = str(uuid.uuid4())
        score = spread * (index - (students - 1) / 2) if scored and students > 1 else None
        conn.execute(
            "insert into cj_processed_essays (els_essay_id, cj_batch_id, text_storage_id,"
            " assessment_input_text, current_bt_score, current_bt_se, comparison_count,"
            " processing_metadata, is_anchor) values (%s, %s, %s, 'student essay text',"
            " %s, %s, %s, %s::json, false)",
            (essay_id, cj_batch_id, f"text-{essay_id}", score,
             se if score is not None else None, 4 if scored else 0,
             json.dumps({"is_anchor": False}) if student_metadata else None),
        )  # fmt: skip
        essays.append(essay_id)
    for position, (ref_id, grade) in enumerate(anchors):
        essay_id = f"ANCHOR_{ref_id}_{uuid.uuid4().hex[:8]}"
        anchor_metadata: dict[str, object] = {"is_anchor": True, "known_grade": grade,
                                              "anchor_ref_id": str(ref_id)}  # fmt: skip
        if era == "head":
            anchor_metadata |= {"text_storage_id": f"anchor-text-{assignment}-{grade}",
                                "anchor_label": grade}  # fmt: skip
        score = spread * (position - (len(anchors) - 1) / 2) if scored else None
        conn.execute(
            "insert into cj_processed_essays (els_essay_id, cj_batch_id, text_storage_id,"
            " assessment_input_text, current_bt_score, current_bt_se, comparison_count,"
            " processing_metadata, is_anchor) values (%s, %s, %s, 'anchor essay text',"
            " %s, %s, %s, %s::json, true)",
            (essay_id, cj_batch_id, f"anchor-text-{assignment}-{grade}", score,
             0.3 if score is not None else None, 4 if scored else 0,
             json.dumps(anchor_metadata)),
        )  # fmt: skip
        essays.append(essay_id)
    chain = list(zip(essays, essays[1:], strict=False)) if pairs.generated else []
    for number, (a, b) in enumerate(chain):
        pending = number < pairs.pending
        errored = not pending and number < pairs.pending + pairs.errored
        winner = None if pending else "error" if errored else "essay_a"
        conn.execute(
            "insert into cj_comparison_pairs (cj_batch_id, essay_a_els_id, essay_b_els_id,"
            " prompt_text, winner, confidence, error_code, error_correlation_id,"
            " error_timestamp, error_service, error_details, processing_metadata,"
            " request_correlation_id, submitted_at, completed_at, pair_generation_mode,"
            " created_at) values (%s, %s, %s, 'which is better?', %s, %s, %s, %s,"
            " case when %s then now() - %s::interval end, %s, %s::json, %s::json, %s,"
            " now() - %s::interval - interval '5 minutes',"
            " case when %s then null else now() - %s::interval - interval '1 minute' end,"
            " %s, (now() at time zone 'utc') - %s::interval - interval '6 minutes')",
            (cj_batch_id, a, b, winner, 0.8 if winner == "essay_a" else None,
             "EXTERNAL_SERVICE_ERROR" if errored else None,
             str(uuid.uuid4()) if errored else None, errored, age,
             "llm_provider_service" if errored else None,
             json.dumps({"status_code": 503}) if errored else None,
             None if pending else json.dumps({"provider": "openai", "model": "gpt-5.1"}),
             str(uuid.uuid4()), age, pending, age,
             "coverage" if era == "head" else None, age),
        )  # fmt: skip
    judged = len(chain) - pairs.pending
    budget = len(chain) if counters.budget == -1 else counters.budget
    conn.execute(
        "insert into cj_batch_states (batch_id, state, total_comparisons,"
        " submitted_comparisons, completed_comparisons, failed_comparisons, last_activity_at,"
        " current_iteration, total_budget, processing_metadata)"
        " values (%s, %s, %s, %s, %s, %s, now() - %s::interval, %s, %s, %s::json)",
        (cj_batch_id, state, len(chain), len(chain),
         judged - pairs.errored, pairs.errored, age, counters.iteration, budget,
         json.dumps(counters.metadata) if counters.metadata is not None else None),
    )  # fmt: skip
    if project and len({grade for _, grade in anchors}) >= 2:
        _project(conn, cj_batch_id, essays[:students], [grade for _, grade in anchors], scale)
    return cj_batch_id


def _project(
    conn: psycopg.Connection, cj_batch_id: int, students: list[str], grades: list[str],
    scale: str,
) -> None:
    """One projection per student, as the grade projector writes it: grades rising with the
    BT score (students are inserted in score order), its calculation metadata."""
    for index, essay_id in enumerate(students):
        grade = grades[min(len(grades) - 1, index * len(grades) // max(len(students), 1))]
        metadata = {
            "bt_mean": 0.0, "bt_se": 0.2, "grade_probabilities": {grade: 0.82},
            "grade_centers": {}, "grade_boundaries": {}, "context_source": "assignment",
            "calibration_method": "gaussian_mixture", "primary_anchor_grade": grade,
            "grade_scale": scale,
        }  # fmt: skip
        conn.execute(
            "insert into grade_projections (els_essay_id, cj_batch_id, primary_grade,"
            " confidence_score, confidence_label, calculation_metadata, model_used,"
            " model_provider, population_prior, grade_scale)"
            " values (%s, %s, %s, 0.74, 'HIGH', %s::json, 'gpt-5.1', 'openai', %s, %s)",
            (essay_id, cj_batch_id, grade, json.dumps(metadata), 1 / len(grades), scale),
        )


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
        nov14 = Counters(iteration=1, budget=None)
        now_iso = datetime.now(UTC).isoformat()

        def finished(
            name: str, *, published: bool = True, result_retries: int = 0,
            traceparent: bool = False, **kwargs: Any,
        ) -> None:
            cj_batch_id = _batch(conn, **kwargs)
            rows = _finalization_rows(conn, cj_batch_id, era=kwargs.get("era", "head"),
                                      traceparent=traceparent)
            for row in rows:
                retries = result_retries if row is rows[1] else 0
                _outbox(conn, row, age=kwargs.get("age", "2 hours"),
                        published=published and retries < 5, retry_count=retries)
            ids[name] = cj_batch_id

        def unfinished(name: str, **kwargs: Any) -> int:
            ids[name] = _batch(conn, completed=False, project=False, **kwargs)
            return ids[name]

        finished("head_assignment_eng5", assignment=ASSIGNMENT_ENG5, status="COMPLETE_STABLE",
                 state="COMPLETED", students=8, anchors=eng5, scale=ENG5[0], traceparent=True)
        finished("nov14_assignment_swedish", assignment=ASSIGNMENT_SWEDISH,
                 status="COMPLETE_MAX_COMPARISONS", state="COMPLETED", students=8,
                 anchors=swedish, era="nov14", counters=nov14)
        finished("guest", assignment=None, status="COMPLETE_STABLE", state="COMPLETED",
                 students=8)
        finished("assignment_without_anchors", assignment=ASSIGNMENT_NO_ANCHORS,
                 status="COMPLETE_STABLE", state="COMPLETED", students=8, course_code="ENG6")
        finished("single_essay", assignment=None, status="COMPLETE_INSUFFICIENT_ESSAYS",
                 state="COMPLETED", students=1, completed=False, scored=False,
                 pairs=Pairs(generated=False), counters=Counters(iteration=0, budget=None))
        forced = {"forced_to_scoring": {"timestamp": now_iso, "progress_pct": 86.7,
                                        "reason": "stuck_timeout"}}  # fmt: skip
        finished("forced_recovery_pending_pairs", assignment=ASSIGNMENT_ENG5,
                 status="COMPLETE_FORCED_RECOVERY", state="COMPLETED", students=8,
                 anchors=eng5, scale=ENG5[0], pairs=Pairs(pending=2),
                 counters=Counters(metadata=forced))
        finished("small_fully_compared", assignment=None, status="COMPLETE_STABLE",
                 state="COMPLETED", students=4, spread=0.1, se=2.0)
        finished("errored_pairs", assignment=ASSIGNMENT_ENG5, status="COMPLETE_STABLE",
                 state="COMPLETED", students=8, anchors=eng5, scale=ENG5[0],
                 pairs=Pairs(errored=2))
        finished("completion_sweep", assignment=None, status="COMPLETE_STABLE",
                 state="COMPLETED", students=8, pairs=Pairs(errored=1),
                 counters=Counters(iteration=2, budget=5))
        finished("events_in_flight", assignment=None, status="COMPLETE_STABLE",
                 state="COMPLETED", students=8, age="1 minute", published=False)
        finished("relay_gave_up", assignment=None, status="COMPLETE_STABLE",
                 state="COMPLETED", students=8, result_retries=5)
        finished("events_unpublished_too_long", assignment=None, status="COMPLETE_STABLE",
                 state="COMPLETED", students=8, age="30 minutes", published=False)

        unfinished("fresh", assignment=ASSIGNMENT_ENG5, status="PENDING", state="INITIALIZING",
                   students=0, age="30 seconds", pairs=Pairs(generated=False),
                   counters=Counters(iteration=0, budget=None))
        unfinished("fetching_content", assignment=ASSIGNMENT_ENG5, status="FETCHING_CONTENT",
                   state="INITIALIZING", students=6, anchors=eng5, scale=ENG5[0],
                   age="1 minute", scored=False, student_metadata=False,
                   pairs=Pairs(generated=False), counters=Counters(iteration=0, budget=None))
        unfinished("generating_pairs", assignment=ASSIGNMENT_ENG5,
                   status="PERFORMING_COMPARISONS", state="GENERATING_PAIRS", students=8,
                   anchors=eng5, scale=ENG5[0], age="1 minute", scored=False,
                   pairs=Pairs(generated=False), counters=Counters(iteration=0, budget=40))
        unfinished("mid_comparisons", assignment=ASSIGNMENT_ENG5,
                   status="PERFORMING_COMPARISONS", state="WAITING_CALLBACKS", students=8,
                   anchors=eng5, scale=ENG5[0], age="2 minutes", scored=False,
                   pairs=Pairs(pending=6))
        unfinished("nov14_waiting_callbacks", assignment=ASSIGNMENT_SWEDISH,
                   status="PERFORMING_COMPARISONS", state="WAITING_CALLBACKS", students=8,
                   anchors=swedish, era="nov14", age="20 minutes", scored=False,
                   pairs=Pairs(pending=3), counters=nov14)
        unfinished("awaiting_completion_sweep", assignment=None,
                   status="PERFORMING_COMPARISONS", state="WAITING_CALLBACKS", students=8,
                   age="4 minutes", scored=False, pairs=Pairs(errored=1))
        unfinished("scoring", assignment=ASSIGNMENT_ENG5, status="PERFORMING_COMPARISONS",
                   state="SCORING", students=8, anchors=eng5, scale=ENG5[0], age="1 minute",
                   scored=False)

        # finalize_failure: ERROR_PROCESSING, FAILED, completed_at, failed_reason, one event
        # with the caller's correlation id.
        reason = {"reason": "low_success_rate", "details": {"success_rate": 0.5}}
        failed_id = _batch(
            conn, assignment=None, status="ERROR_PROCESSING", state="FAILED", students=8,
            scored=False, project=False, pairs=Pairs(errored=4), age="3 hours",
            upload_metadata={"failed_reason": reason | {"timestamp": now_iso}},
        )
        _outbox(conn, _failure_row(conn, failed_id, correlation_id=str(uuid.uuid4()),
                                   error_info=reason), age="3 hours", published=True)
        ids["finalize_failure"] = failed_id

        # The batch monitor below 80 %: FAILED, upload status unchanged, its own event.
        monitor_reason = {"timestamp": now_iso, "progress_pct": 42.9,
                          "reason": "stuck_timeout_insufficient_progress"}  # fmt: skip
        monitor_id = unfinished(
            "monitor_failed", assignment=ASSIGNMENT_ENG5, status="PERFORMING_COMPARISONS",
            state="FAILED", students=8, anchors=eng5, scale=ENG5[0], scored=False,
            pairs=Pairs(pending=8), age="5 hours",
            counters=Counters(metadata={"failed_reason": monitor_reason}),
        )
        _outbox(conn, _failure_row(
            conn, monitor_id, correlation_id=str(uuid.uuid4()), by_monitor=True,
            error_info={"reason": "stuck_timeout_insufficient_progress", "progress_pct": 42.9,
                        "batch_state": "FAILED"},
        ), age="5 hours", published=True)  # fmt: skip

        # The workflow's error path before any pair; the request handler's failure event.
        workflow_id = unfinished(
            "workflow_error_before_pairs", assignment=ASSIGNMENT_ENG5,
            status="ERROR_PROCESSING", state="INITIALIZING", students=6, anchors=eng5,
            scale=ENG5[0], scored=False, pairs=Pairs(generated=False), age="6 hours",
            counters=Counters(iteration=0, budget=None),
        )
        correlation = _batch_facts(conn, workflow_id).correlation_id
        _outbox(conn, _failure_row(
            conn, workflow_id, correlation_id=str(correlation), job_id="INITIALIZATION_FAILED",
            error_info={"error_code": "PROCESSING_ERROR", "error_message": "pair generation",
                        "correlation_id": str(correlation), "timestamp": now_iso,
                        "service": "cj_assessment_service", "details": {}},
        ), age="6 hours", published=True)  # fmt: skip
        unfinished("essay_processing_error", assignment=None, status="ERROR_ESSAY_PROCESSING",
                   state="INITIALIZING", students=0, pairs=Pairs(generated=False),
                   age="6 hours", counters=Counters(iteration=0, budget=None))
        unfinished("cancelled", assignment=None, status="PERFORMING_COMPARISONS",
                   state="CANCELLED", students=8, scored=False, pairs=Pairs(pending=4),
                   age="6 hours")

        # Batch 20: COMPLETE_STABLE, still WAITING_CALLBACKS, anchors by metadata only.
        wedged_id = unfinished(
            "batch20_replica", assignment=ASSIGNMENT_ENG5, status="COMPLETE_STABLE",
            state="WAITING_CALLBACKS", students=3, anchors=eng5, scale=ENG5[0],
            age="20 minutes",
        )
        conn.execute(
            "update cj_processed_essays set is_anchor = false where cj_batch_id = %s",
            (wedged_id,),
        )
        conn.execute(
            "update cj_batch_states set partial_scoring_triggered = true where batch_id = %s",
            (wedged_id,),
        )
        # Head finalize_scoring died after committing SCORING, the scores, the projections
        # and the first event; status and COMPLETED were never committed.
        crashed_id = _batch(
            conn, assignment=ASSIGNMENT_ENG5, status="PERFORMING_COMPARISONS", state="SCORING",
            students=8, anchors=eng5, scale=ENG5[0], completed=False, age="45 minutes",
        )
        first_row = _finalization_rows(conn, crashed_id, era="head")[0]
        _outbox(conn, first_row, age="45 minutes", published=True)
        ids["head_finalizer_crashed"] = crashed_id
        unfinished("nov14_finalizer_error", assignment=ASSIGNMENT_SWEDISH,
                   status="ERROR_PROCESSING", state="SCORING", students=8, anchors=swedish,
                   era="nov14", age="45 minutes", scored=False, counters=nov14)
        unfinished("stalled_callbacks", assignment=ASSIGNMENT_ENG5,
                   status="PERFORMING_COMPARISONS", state="WAITING_CALLBACKS", students=8,
                   anchors=eng5, scale=ENG5[0], scored=False, pairs=Pairs(pending=2),
                   age="5 hours")
        conn.commit()
    return ids

