"""The finalizer patch: `BatchFinalizer.finalize_scoring` drives a batch
WAITING_CALLBACKS -> SCORING -> COMPLETED atomically and idempotently (Batch 20 root cause 2).

Phase 1 (own short transaction): lock the upload and state rows, check the guard, move
WAITING_CALLBACKS -> SCORING and commit, so monitoring sees a batch that is scoring.

Phase 2 (ONE transaction): lock both rows again and re-check the state is SCORING, then
  scores       fit Bradley–Terry on the completed comparisons, store score, SE, count;
  projections  project student grades from the anchors, upsert them (never for an anchor);
  upload       status COMPLETE_STABLE (or COMPLETE_INSUFFICIENT_ESSAYS) and completed_at;
  events       exactly two outbox events carrying UUID(upload.event_correlation_id);
  state        SCORING -> COMPLETED.
Any failure in phase 2 rolls all of it back: the batch stays in SCORING with no projection,
event or status change, and a second call finishes it. Rows are locked in a fixed order
(upload, then state) so two finalizers queue instead of deadlocking; the second one finds the
batch COMPLETED and does nothing.

The guard: COMPLETED -> no-op that says so; FAILED or CANCELLED -> refused; no anchors in the
batch while its assignment has registered anchors -> refused (the Batch 20 shape); anchors whose
grade or scale cannot be read -> refused; a batch that does not exist -> BatchNotFoundError.
A refusal writes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Json

from python_fix import scoring
from python_fix.grade_scales import GRADE_SCALES, GradeScale

SOURCE_SERVICE = "cj_assessment_service"
SCHEMA_VERSION = 1
THIN_EVENT_TYPE = "huleedu.cj_assessment.completed.v1"
RICH_EVENT_TYPE = "huleedu.assessment.result.published.v1"
PHASE1_DONE = "phase1_committed"
PHASE2_STEPS = ("scores", "projections", "upload_status", "events", "state")
MIN_STUDENT_ESSAYS = 2

OUTCOME_COMPLETED = "completed"
OUTCOME_ALREADY_COMPLETED = "already_completed"
OUTCOME_INSUFFICIENT = "insufficient_essays"


class FinalizationError(Exception):
    """Finalization could not run; the message says why in one line."""


class BatchNotFoundError(FinalizationError):
    """No CJ batch with that id."""


class FinalizationRefused(FinalizationError):
    """The guard refused the batch; nothing was written."""


class InjectedFailure(RuntimeError):
    """Raised by the test seam `fail_at` to simulate a crash inside phase 2."""


@dataclass
class FinalizationResult:
    cj_batch_id: int
    outcome: str
    transitions: list[str] = field(default_factory=list)
    scores_written: int = 0
    projections_written: int = 0
    events_written: int = 0
    upload_status: str | None = None
    message: str = ""


@dataclass(frozen=True)
class _Batch:
    id: int
    bos_batch_id: str
    correlation_id: uuid.UUID
    assignment_id: str | None
    course_code: str
    status: str
    state: str


@dataclass(frozen=True)
class _Essay:
    els_essay_id: str
    is_anchor: bool
    metadata: dict[str, Any]


@dataclass(frozen=True)
class _AnchorPlan:
    """The anchors of a batch with their grades and the one scale they share."""

    scale: GradeScale | None
    grades: dict[str, str]


class BatchFinalizer:
    """Finalizes CJ batches on the database at `dsn` (a libpq URL or conninfo string).

    Test seams: `fail_at` names a phase-2 step in PHASE2_STEPS; the finalizer raises
    InjectedFailure right after that step, before the commit. `on_step` is called with
    PHASE1_DONE once phase 1 has committed, then with each phase-2 step name as it finishes.
    """

    def __init__(
        self,
        dsn: str,
        *,
        fail_at: str | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> None:
        if fail_at is not None and fail_at not in PHASE2_STEPS:
            raise ValueError(f"fail_at must be one of {', '.join(PHASE2_STEPS)}, got {fail_at!r}")
        self._dsn = dsn
        self._fail_at = fail_at
        self._on_step = on_step

    def finalize_scoring(self, cj_batch_id: int) -> FinalizationResult:
        result = FinalizationResult(cj_batch_id=cj_batch_id, outcome="")
        with psycopg.connect(self._dsn, autocommit=True, application_name="cj-finalizer") as conn:
            with conn.transaction():
                batch = _lock_batch(conn, cj_batch_id)
                if batch.state == "COMPLETED":
                    return _already_completed(result, batch)
                _check_guard(conn, batch)
                if batch.state == "WAITING_CALLBACKS":
                    _set_state(conn, batch.id, "SCORING")
                    result.transitions.append("WAITING_CALLBACKS->SCORING")
            if self._on_step is not None:
                self._on_step(PHASE1_DONE)
            with conn.transaction():
                batch = _lock_batch(conn, cj_batch_id)
                if batch.state == "COMPLETED":
                    return _already_completed(result, batch)
                if batch.state != "SCORING":
                    raise FinalizationRefused(
                        f"CJ batch {batch.id} left SCORING (now {batch.state}) before scoring"
                    )
                plan = _check_guard(conn, batch)
                self._score_and_complete(conn, batch, plan, result)
        return result

    def _step_done(self, step: str) -> None:
        if self._on_step is not None:
            self._on_step(step)
        if step == self._fail_at:
            raise InjectedFailure(f"injected failure after phase-2 step {step!r}")

    def _score_and_complete(
        self,
        conn: psycopg.Connection,
        batch: _Batch,
        plan: _AnchorPlan,
        result: FinalizationResult,
    ) -> None:
        essays = _load_essays(conn, batch.id)
        students = [essay for essay in essays if not essay.is_anchor]
        insufficient = len(students) < MIN_STUDENT_ESSAYS

        scores: dict[str, scoring.EssayScore] = {}
        if not insufficient:
            outcomes = _load_outcomes(conn, batch.id)
            scores = scoring.fit_bradley_terry([essay.els_essay_id for essay in essays], outcomes)
            result.scores_written = _store_scores(conn, scores)
        self._step_done("scores")

        projections: dict[str, scoring.GradeProjection] = {}
        if not insufficient and plan.scale is not None:
            anchor_scores = [
                (grade, scores[essay_id].score) for essay_id, grade in plan.grades.items()
            ]
            calibration = scoring.calibrate(plan.scale, anchor_scores)
            if calibration is not None:
                projections = scoring.project_students(
                    calibration, {s.els_essay_id: scores[s.els_essay_id] for s in students}
                )
                result.projections_written = _store_projections(
                    conn, batch.id, plan.scale.name, projections, scores
                )
        self._step_done("projections")

        status = "COMPLETE_INSUFFICIENT_ESSAYS" if insufficient else "COMPLETE_STABLE"
        conn.execute(
            "update cj_batch_uploads set status = %s, completed_at = now(), updated_at = now() "
            "where id = %s",
            (status, batch.id),
        )
        result.upload_status = status
        self._step_done("upload_status")

        result.events_written = _write_events(
            conn, batch, status, essays, scores, projections, plan
        )
        self._step_done("events")

        _set_state(conn, batch.id, "COMPLETED")
        result.transitions.append("SCORING->COMPLETED")
        result.outcome = OUTCOME_INSUFFICIENT if insufficient else OUTCOME_COMPLETED
        result.message = (
            f"CJ batch {batch.id} finalized: {status}, {result.scores_written} scores, "
            f"{result.projections_written} projections, {result.events_written} events"
        )
        self._step_done("state")


def _already_completed(result: FinalizationResult, batch: _Batch) -> FinalizationResult:
    result.outcome = OUTCOME_ALREADY_COMPLETED
    result.upload_status = batch.status
    result.message = f"CJ batch {batch.id} is already COMPLETED; nothing to do"
    return result


def _lock_batch(conn: psycopg.Connection, cj_batch_id: int) -> _Batch:
    """Lock the upload row, then the state row (always in this order)."""
    upload = conn.execute(
        "select id, bos_batch_id, event_correlation_id, assignment_id, course_code, "
        "status::text from cj_batch_uploads where id = %s for update",
        (cj_batch_id,),
    ).fetchone()
    if upload is None:
        raise BatchNotFoundError(f"CJ batch {cj_batch_id} does not exist")
    state = conn.execute(
        "select state::text from cj_batch_states where batch_id = %s for update", (cj_batch_id,)
    ).fetchone()
    if state is None:
        raise FinalizationRefused(f"CJ batch {cj_batch_id} has no state row (cj_batch_states)")
    try:
        correlation_id = uuid.UUID(upload[2])
    except ValueError:
        raise FinalizationRefused(
            f"CJ batch {cj_batch_id}: the upload's event_correlation_id is not a UUID"
        ) from None
    return _Batch(
        id=upload[0],
        bos_batch_id=upload[1],
        correlation_id=correlation_id,
        assignment_id=upload[3],
        course_code=upload[4],
        status=upload[5],
        state=state[0],
    )


def _check_guard(conn: psycopg.Connection, batch: _Batch) -> _AnchorPlan:
    """Refuse batches that must not be finalized; return the anchors' grades and scale."""
    if batch.state in ("FAILED", "CANCELLED"):
        raise FinalizationRefused(f"CJ batch {batch.id} is {batch.state}; it cannot be finalized")
    if batch.state not in ("WAITING_CALLBACKS", "SCORING"):
        raise FinalizationRefused(
            f"CJ batch {batch.id} is {batch.state}; finalization needs WAITING_CALLBACKS or SCORING"
        )
    references = _registered_anchor_references(conn, batch.assignment_id)
    anchors = [essay for essay in _load_essays(conn, batch.id) if essay.is_anchor]
    if references and not anchors:
        raise FinalizationRefused(
            f"CJ batch {batch.id} has no anchor essays (is_anchor) but its assignment has "
            f"{len(references)} registered anchors; refusing to finalize without projections"
        )
    return _anchor_plan(batch, anchors, references)


def _registered_anchor_references(
    conn: psycopg.Connection, assignment_id: str | None
) -> dict[str, tuple[str, str, str]]:
    """Registered anchors of the assignment: id -> (label, grade, scale)."""
    if assignment_id is None:
        return {}
    rows = conn.execute(
        "select id, anchor_label, grade, grade_scale from anchor_essay_references "
        "where assignment_id = %s",
        (assignment_id,),
    ).fetchall()
    return {str(row[0]): (row[1], row[2], row[3]) for row in rows}


def _anchor_plan(
    batch: _Batch, anchors: list[_Essay], references: dict[str, tuple[str, str, str]]
) -> _AnchorPlan:
    """Each anchor's grade (metadata `known_grade`, else its reference) and the shared scale
    (its reference's, else metadata `grade_scale`)."""
    if not anchors:
        return _AnchorPlan(scale=None, grades={})
    grades: dict[str, str] = {}
    scale_names: set[str] = set()
    for anchor in anchors:
        reference = references.get(str(anchor.metadata.get("anchor_ref_id")))
        grade = anchor.metadata.get("known_grade") or (reference[1] if reference else None)
        scale_name = reference[2] if reference else anchor.metadata.get("grade_scale")
        if not grade or not scale_name:
            raise FinalizationRefused(
                f"CJ batch {batch.id}: anchor {anchor.els_essay_id} has no readable grade or "
                "grade scale (known_grade / anchor_ref_id)"
            )
        grades[anchor.els_essay_id] = str(grade)
        scale_names.add(str(scale_name))
    if len(scale_names) != 1:
        raise FinalizationRefused(
            f"CJ batch {batch.id}: anchors mix grade scales {sorted(scale_names)}"
        )
    scale_name = scale_names.pop()
    scale = GRADE_SCALES.get(scale_name)
    if scale is None:
        raise FinalizationRefused(f"CJ batch {batch.id}: unknown grade scale {scale_name!r}")
    unknown = sorted({grade for grade in grades.values() if grade not in scale.grades})
    if unknown:
        raise FinalizationRefused(
            f"CJ batch {batch.id}: anchor grades {unknown} are not in the scale {scale_name}"
        )
    return _AnchorPlan(scale=scale, grades=grades)


def _load_essays(conn: psycopg.Connection, cj_batch_id: int) -> list[_Essay]:
    rows = conn.execute(
        "select els_essay_id, is_anchor, processing_metadata from cj_processed_essays "
        "where cj_batch_id = %s order by els_essay_id",
        (cj_batch_id,),
    ).fetchall()
    return [_Essay(row[0], row[1], row[2] if isinstance(row[2], dict) else {}) for row in rows]


def _load_outcomes(conn: psycopg.Connection, cj_batch_id: int) -> list[tuple[str, str]]:
    """(winner, loser) ids of the batch's completed comparisons, in id order."""
    rows = conn.execute(
        "select essay_a_els_id, essay_b_els_id, winner from cj_comparison_pairs "
        "where cj_batch_id = %s and winner in ('essay_a', 'essay_b') order by id",
        (cj_batch_id,),
    ).fetchall()
    return [(a, b) if winner == "essay_a" else (b, a) for a, b, winner in rows]


def _store_scores(conn: psycopg.Connection, scores: dict[str, scoring.EssayScore]) -> int:
    with conn.cursor() as cur:
        cur.executemany(
            "update cj_processed_essays set current_bt_score = %s, current_bt_se = %s, "
            "comparison_count = %s, updated_at = now() where els_essay_id = %s",
            [(s.score, s.se, s.comparison_count, essay_id) for essay_id, s in scores.items()],
        )
    return len(scores)


def _store_projections(
    conn: psycopg.Connection,
    cj_batch_id: int,
    scale_name: str,
    projections: dict[str, scoring.GradeProjection],
    scores: dict[str, scoring.EssayScore],
) -> int:
    rows = []
    for essay_id, projection in projections.items():
        metadata = {
            "grade_probabilities": projection.probabilities,
            "bt_score": scores[essay_id].score,
            "bt_se": scores[essay_id].se,
            "comparison_count": scores[essay_id].comparison_count,
        }
        rows.append(
            (
                essay_id,
                cj_batch_id,
                projection.primary_grade,
                scale_name,
                projection.confidence_score,
                projection.confidence_label,
                Json(metadata),
                projection.population_prior,
                projection.normalized_score,
            )
        )
    with conn.cursor() as cur:
        cur.executemany(
            "insert into grade_projections (els_essay_id, cj_batch_id, primary_grade, "
            "grade_scale, confidence_score, confidence_label, calculation_metadata, "
            "population_prior, normalized_score, created_at) "
            "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, now()) "
            "on conflict (els_essay_id, cj_batch_id) do update set "
            "primary_grade = excluded.primary_grade, grade_scale = excluded.grade_scale, "
            "confidence_score = excluded.confidence_score, "
            "confidence_label = excluded.confidence_label, "
            "calculation_metadata = excluded.calculation_metadata, "
            "population_prior = excluded.population_prior, "
            "normalized_score = excluded.normalized_score, created_at = excluded.created_at",
            rows,
        )
    return len(rows)


def _set_state(conn: psycopg.Connection, cj_batch_id: int, state: str) -> None:
    conn.execute(
        "update cj_batch_states set state = %s, last_activity_at = now() where batch_id = %s",
        (state, cj_batch_id),
    )


def _envelope(event_type: str, correlation_id: uuid.UUID, data: dict[str, Any]) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "event_timestamp": datetime.now(UTC).isoformat(),
        "source_service": SOURCE_SERVICE,
        "schema_version": SCHEMA_VERSION,
        "correlation_id": str(correlation_id),
        "data": data,
        "metadata": {},
    }


def _write_events(
    conn: psycopg.Connection,
    batch: _Batch,
    status: str,
    essays: list[_Essay],
    scores: dict[str, scoring.EssayScore],
    projections: dict[str, scoring.GradeProjection],
    plan: _AnchorPlan,
) -> int:
    """The thin completion event and the rich result event (ids, grades, scores; no text)."""
    students = [essay for essay in essays if not essay.is_anchor]
    thin = {
        "entity_id": batch.bos_batch_id,
        "entity_type": "batch",
        "cj_assessment_job_id": str(batch.id),
        "status": status,
        "processing_summary": {
            "student_essays": len(students),
            "anchor_essays": len(essays) - len(students),
            "projections": len(projections),
        },
    }
    ranked = sorted(students, key=lambda e: -scores[e.els_essay_id].score if scores else 0.0)
    results = []
    for rank, essay in enumerate(ranked, start=1):
        projection = projections.get(essay.els_essay_id)
        score = scores.get(essay.els_essay_id)
        results.append(
            {
                "els_essay_id": essay.els_essay_id,
                "rank": rank if scores else None,
                "bt_score": score.score if score else None,
                "bt_se": score.se if score else None,
                "primary_grade": projection.primary_grade if projection else None,
                "confidence_score": projection.confidence_score if projection else None,
                "confidence_label": projection.confidence_label if projection else None,
            }
        )
    rich = {
        "batch_id": batch.bos_batch_id,
        "cj_assessment_job_id": str(batch.id),
        "assignment_id": batch.assignment_id,
        "course_code": batch.course_code,
        "status": status,
        "assessment_method": "cj_assessment",
        "grade_scale": plan.scale.name if plan.scale else None,
        "essay_results": results,
    }
    events = [
        (batch.bos_batch_id, "cj_batch", THIN_EVENT_TYPE, thin),
        (str(batch.id), "assessment_result", RICH_EVENT_TYPE, rich),
    ]
    with conn.cursor() as cur:
        for aggregate_id, aggregate_type, event_type, data in events:
            cur.execute(
                "insert into event_outbox (aggregate_id, aggregate_type, event_type, "
                "event_data, topic, event_key, created_at) "
                "values (%s, %s, %s, %s, %s, %s, now())",
                (
                    aggregate_id,
                    aggregate_type,
                    event_type,
                    Json(_envelope(event_type, batch.correlation_id, data)),
                    event_type,
                    aggregate_id,
                ),
            )
    return len(events)
