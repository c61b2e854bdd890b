"""The finalizer patch: `BatchFinalizer.finalize_scoring` drives a batch
WAITING_CALLBACKS -> SCORING -> COMPLETED atomically and idempotently (Batch 20 root cause 2).

It has production's interface: `BatchFinalizer(session_provider, …)`, where
`session_provider.session()` is an async context manager giving a SQLAlchemy `AsyncSession`
(the service's SessionProviderProtocol), and the async
`finalize_scoring(batch_id, correlation_id, log_extra, *, completion_status=None, source=None)`.

Phase 1 (own short transaction): lock the upload and state rows, check the guard, move
WAITING_CALLBACKS -> SCORING and commit, so monitoring sees a batch that is scoring.

Phase 2 (ONE transaction): lock both rows again and re-check the state is SCORING, then
  scores       fit Bradley–Terry on the completed comparisons, store score, SE, count;
  projections  project student grades from the anchors, upsert them (never for an anchor);
  upload       status COMPLETE_STABLE, the given completion_status, or
               COMPLETE_INSUFFICIENT_ESSAYS, and completed_at;
  events       the three outbox rows production writes (completion, result, resource
               consumption; python_fix.events), with UUID(upload.event_correlation_id);
  state        SCORING -> COMPLETED.
Any failure in phase 2 rolls all of it back: the batch stays in SCORING with no projection,
event or status change, and a second call finishes it. Rows are locked in a fixed order
(upload, then state) so two finalizers queue instead of deadlocking; the second one finds the
batch COMPLETED and does nothing. Production writes the same steps in several commits; here
they are one, so the outbox never holds events for a batch that is not COMPLETED, and the
idempotency rests on the state lock, not on the outbox's unique index.

The grade scale is resolved as production resolves it: the assignment's
`assessment_instructions` row, else the course's (course_id = course_code), else
`swedish_8_anchor`. An anchor's grade is, first match wins, its metadata `anchor_grade`, its
metadata `known_grade`, the reference with its text_storage_id, the reference its
`anchor_ref_id` names.

The guard (checked in both phases; a refusal writes nothing): COMPLETED -> no-op that says so;
FAILED or CANCELLED or a state before WAITING_CALLBACKS -> refused; a scale whose grades the
result event cannot carry (`eng5_np_national_9_step`: 0-9 fail EssayResultV1.letter_grade) ->
refused; no `user_id` on the upload (the resource event needs it) -> refused; no anchors in the
batch while its assignment has registered anchors for the scale -> refused (the Batch 20 shape);
an anchor whose grade cannot be read or is not in the scale -> refused; a batch that does not
exist -> BatchNotFoundError.

Every transition, refusal and no-op is logged on the `python_fix.finalizer` logger with
cj_batch_id, correlation_id, from_state, to_state and source (never essay text).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from psycopg.types.json import Json
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from python_fix import events, scoring
from python_fix.grade_scales import DEFAULT_SCALE_NAME, GradeScale, scale_named

# Kept for callers that name the events: the completion and result topics.
THIN_EVENT_TYPE = events.COMPLETED_TOPIC
RICH_EVENT_TYPE = events.RESULT_TOPIC
PHASE1_DONE = "phase1_committed"
PHASE2_STEPS = ("scores", "projections", "upload_status", "events", "state")
MIN_STUDENT_ESSAYS = 2
DEFAULT_COMPLETION_STATUS = "COMPLETE_STABLE"
INSUFFICIENT_STATUS = "COMPLETE_INSUFFICIENT_ESSAYS"
COMPLETION_STATUSES = (
    "COMPLETE_STABLE",
    "COMPLETE_MAX_COMPARISONS",
    "COMPLETE_INSUFFICIENT_ESSAYS",
    "COMPLETE_FORCED_RECOVERY",
)

OUTCOME_COMPLETED = "completed"
OUTCOME_ALREADY_COMPLETED = "already_completed"
OUTCOME_INSUFFICIENT = "insufficient_essays"

logger = logging.getLogger(__name__)
# LogRecord attributes that a caller's log_extra must not overwrite.
_RESERVED_LOG_KEYS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class SessionProviderProtocol(Protocol):
    """The service's session provider: `session()` gives a fresh AsyncSession."""

    def session(self) -> AbstractAsyncContextManager[AsyncSession]: ...


@dataclass(frozen=True)
class FinalizerSettings:
    """The service settings the finalizer reads: the model named when no pair says one."""

    default_llm_provider: str = "openai"
    default_llm_model: str = "gpt-5.1"


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
    grade_scale: str | None = None
    message: str = ""


@dataclass(frozen=True)
class _Batch:
    id: int
    bos_batch_id: str
    correlation_id: uuid.UUID
    assignment_id: str | None
    course_code: str
    user_id: str | None
    org_id: str | None
    created_at: datetime
    status: str
    state: str


@dataclass(frozen=True)
class _Essay:
    els_essay_id: str
    is_anchor: bool
    text_storage_id: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class _Reference:
    id: int
    grade: str
    text_storage_id: str


@dataclass(frozen=True)
class _AnchorPlan:
    """The batch's scale, where it came from, and its anchors' grades."""

    scale: GradeScale
    context_source: str
    grades: dict[str, str]


@dataclass(frozen=True)
class _Call:
    """What every log record of one call carries."""

    cj_batch_id: int
    correlation_id: uuid.UUID
    source: str | None
    log_extra: Mapping[str, Any]

    def log(self, level: int, message: str, from_state: str | None, to_state: str | None,
            **fields: Any) -> None:  # fmt: skip
        extra = {k: v for k, v in self.log_extra.items() if k not in _RESERVED_LOG_KEYS}
        extra.update(
            cj_batch_id=self.cj_batch_id,
            correlation_id=str(self.correlation_id),
            from_state=from_state,
            to_state=to_state,
            source=self.source,
            **fields,
        )
        logger.log(level, message, extra=extra)


class BatchFinalizer:
    """Finalizes CJ batches through the service's session provider.

    Test seams: `fail_at` names a phase-2 step in PHASE2_STEPS; the finalizer raises
    InjectedFailure right after that step, before the commit. `on_step` is called with
    PHASE1_DONE once phase 1 has committed, then with each phase-2 step name as it finishes.
    """

    def __init__(
        self,
        session_provider: SessionProviderProtocol,
        settings: FinalizerSettings | None = None,
        *,
        fail_at: str | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> None:
        check_fail_at(fail_at)
        self._sessions = session_provider
        self._settings = settings or FinalizerSettings()
        self._fail_at = fail_at
        self._on_step = on_step

    async def finalize_scoring(
        self,
        batch_id: int,
        correlation_id: uuid.UUID,
        log_extra: Mapping[str, Any],
        *,
        completion_status: Any = None,
        source: str | None = None,
    ) -> FinalizationResult:
        """Finalize CJ batch `batch_id` (see the module docstring); return what it did."""
        status = _completion_status(completion_status)
        call = _Call(batch_id, correlation_id, source, dict(log_extra or {}))
        result = FinalizationResult(cj_batch_id=batch_id, outcome="")
        state: str | None = None
        phase = "phase 1"
        try:
            async with self._sessions.session() as session:
                async with session.begin():
                    batch = await _lock_batch(session, batch_id)
                    state = batch.state
                    if batch.state == "COMPLETED":
                        return _already_completed(result, batch, call)
                    plan = await _check_guard(session, batch)
                    if batch.state == "WAITING_CALLBACKS":
                        await _set_state(session, batch.id, "SCORING")
                phase1_moved = batch.state == "WAITING_CALLBACKS"
                if phase1_moved:
                    state = "SCORING"
                    result.transitions.append("WAITING_CALLBACKS->SCORING")
                    call.log(logging.INFO, f"CJ batch {batch_id}: WAITING_CALLBACKS -> SCORING",
                             "WAITING_CALLBACKS", "SCORING", phase="phase1")  # fmt: skip
                if self._on_step is not None:
                    self._on_step(PHASE1_DONE)
                phase = "phase 2"
                async with session.begin():
                    batch = await _lock_batch(session, batch_id)
                    state = batch.state
                    if batch.state == "COMPLETED":
                        return _already_completed(result, batch, call)
                    if batch.state != "SCORING":
                        raise FinalizationRefused(
                            f"CJ batch {batch.id} left SCORING (now {batch.state}) before scoring"
                        )
                    plan = await _check_guard(session, batch)
                    await self._score_and_complete(session, batch, plan, status, result)
        except FinalizationRefused as exc:
            call.log(logging.WARNING, f"refused: {exc}", state, state, outcome="refused")
            raise
        except BatchNotFoundError as exc:
            call.log(logging.WARNING, str(exc), None, None, outcome="not_found")
            raise
        except Exception as exc:
            if state is not None:
                call.log(logging.ERROR, f"CJ batch {batch_id}: {phase} rolled back "
                         f"({type(exc).__name__}); the batch stays {state}", state, state,
                         outcome="rolled_back")  # fmt: skip
            raise
        call.log(logging.INFO, f"CJ batch {batch_id}: SCORING -> COMPLETED "
                 f"(upload status {result.upload_status}, {result.events_written} events)",
                 "SCORING", "COMPLETED", phase="phase2", upload_status=result.upload_status,
                 grade_scale=result.grade_scale, outcome=result.outcome)  # fmt: skip
        return result

    def _step_done(self, step: str) -> None:
        if self._on_step is not None:
            self._on_step(step)
        if step == self._fail_at:
            raise InjectedFailure(f"injected failure after phase-2 step {step!r}")

    async def _score_and_complete(
        self,
        session: AsyncSession,
        batch: _Batch,
        plan: _AnchorPlan,
        completion_status: str,
        result: FinalizationResult,
    ) -> None:
        essays = await _load_essays(session, batch.id)
        students = [essay for essay in essays if not essay.is_anchor]
        insufficient = len(students) < MIN_STUDENT_ESSAYS
        result.grade_scale = plan.scale.name

        scores: dict[str, scoring.EssayScore] = {}
        if not insufficient:
            outcomes = await _load_outcomes(session, batch.id)
            scores = scoring.fit_bradley_terry([essay.els_essay_id for essay in essays], outcomes)
            result.scores_written = await _store_scores(session, scores)
        self._step_done("scores")

        projections: dict[str, scoring.GradeProjection] = {}
        if not insufficient and plan.grades:
            anchor_scores = [
                (grade, scores[essay_id].score) for essay_id, grade in plan.grades.items()
            ]
            calibration = scoring.calibrate(plan.scale, anchor_scores)
            if calibration is not None:
                projections = scoring.project_students(
                    calibration, {s.els_essay_id: scores[s.els_essay_id] for s in students}
                )
                result.projections_written = await _store_projections(
                    session, batch.id, plan, projections, scores
                )
        self._step_done("projections")

        status = INSUFFICIENT_STATUS if insufficient else completion_status
        await session.execute(
            text(
                "update cj_batch_uploads set status = cast(:status as cj_batch_status_enum), "
                "completed_at = now(), updated_at = now() where id = :id"
            ),
            {"status": status, "id": batch.id},
        )
        result.upload_status = status
        self._step_done("upload_status")

        model = await _model_attribution(session, batch.id, self._settings)
        rows = events.build_outbox_rows(
            _batch_facts(batch),
            _ranking(essays, scores),
            {
                essay_id: events.Grade(p.primary_grade, p.confidence_score, p.confidence_label)
                for essay_id, p in projections.items()
            },
            model,
        )
        result.events_written = await _insert_outbox_rows(session, rows)
        self._step_done("events")

        await _set_state(session, batch.id, "COMPLETED")
        result.transitions.append("SCORING->COMPLETED")
        result.outcome = OUTCOME_INSUFFICIENT if insufficient else OUTCOME_COMPLETED
        result.message = (
            f"CJ batch {batch.id} finalized: {status}, {result.scores_written} scores, "
            f"{result.projections_written} projections, {result.events_written} events"
        )
        self._step_done("state")


def check_fail_at(fail_at: str | None) -> None:
    """The test seam `fail_at` must name a phase-2 step (or be None)."""
    if fail_at is not None and fail_at not in PHASE2_STEPS:
        raise ValueError(f"fail_at must be one of {', '.join(PHASE2_STEPS)}, got {fail_at!r}")


def _completion_status(value: Any) -> str:
    """The upload status to finish with: a CJBatchStatusEnum member or its label."""
    if value is None:
        return DEFAULT_COMPLETION_STATUS
    label = str(getattr(value, "value", value))
    if label not in COMPLETION_STATUSES:
        raise ValueError(
            f"completion_status must be one of {', '.join(COMPLETION_STATUSES)}, got {label!r}"
        )
    return label


def _already_completed(result: FinalizationResult, batch: _Batch, call: _Call):
    result.outcome = OUTCOME_ALREADY_COMPLETED
    result.upload_status = batch.status
    result.message = f"CJ batch {batch.id} is already COMPLETED; nothing to do"
    call.log(logging.INFO, result.message, "COMPLETED", "COMPLETED", outcome="no_op")
    return result


async def _lock_batch(session: AsyncSession, cj_batch_id: int) -> _Batch:
    """Lock the upload row, then the state row (always in this order)."""
    upload = (
        await session.execute(
            text(
                "select id, bos_batch_id, event_correlation_id, assignment_id, course_code, "
                "user_id, org_id, created_at, status::text from cj_batch_uploads "
                "where id = :id for update"
            ),
            {"id": cj_batch_id},
        )
    ).first()
    if upload is None:
        raise BatchNotFoundError(f"CJ batch {cj_batch_id} does not exist")
    state = (
        await session.execute(
            text("select state::text from cj_batch_states where batch_id = :id for update"),
            {"id": cj_batch_id},
        )
    ).first()
    if state is None:
        raise FinalizationRefused(f"CJ batch {cj_batch_id} has no state row (cj_batch_states)")
    try:
        correlation_id = uuid.UUID(upload.event_correlation_id)
    except ValueError:
        raise FinalizationRefused(
            f"CJ batch {cj_batch_id}: the upload's event_correlation_id is not a UUID"
        ) from None
    return _Batch(
        id=upload.id,
        bos_batch_id=upload.bos_batch_id,
        correlation_id=correlation_id,
        assignment_id=upload.assignment_id,
        course_code=upload.course_code,
        user_id=upload.user_id,
        org_id=upload.org_id,
        created_at=upload.created_at,
        status=upload.status,
        state=state[0],
    )


async def _check_guard(session: AsyncSession, batch: _Batch) -> _AnchorPlan:
    """Refuse batches that must not be finalized; return the scale and the anchors' grades."""
    if batch.state in ("FAILED", "CANCELLED"):
        raise FinalizationRefused(f"CJ batch {batch.id} is {batch.state}; it cannot be finalized")
    if batch.state not in ("WAITING_CALLBACKS", "SCORING"):
        raise FinalizationRefused(
            f"CJ batch {batch.id} is {batch.state}; finalization needs WAITING_CALLBACKS or SCORING"
        )
    scale, context_source = await _resolve_scale(session, batch)
    if not scale.fits_result_event:
        raise FinalizationRefused(
            f"CJ batch {batch.id}: grade scale {scale.name} gives grades "
            f"({', '.join(scale.all_grades)}) that AssessmentResultV1.letter_grade rejects; "
            "refusing to finalize (a known production contract gap)"
        )
    if not batch.user_id:
        raise FinalizationRefused(
            f"CJ batch {batch.id} has no user_id; the resource consumption event needs one"
        )
    references = await _anchor_references(session, batch.assignment_id, scale.name)
    anchors = [essay for essay in await _load_essays(session, batch.id) if essay.is_anchor]
    if references and not anchors:
        raise FinalizationRefused(
            f"CJ batch {batch.id} has no anchor essays (is_anchor) but its assignment has "
            f"{len(references)} registered anchors; refusing to finalize without projections"
        )
    grades = {anchor.els_essay_id: _anchor_grade(batch, anchor, references) for anchor in anchors}
    unknown = sorted({grade for grade in grades.values() if grade not in scale.grades})
    if unknown:
        raise FinalizationRefused(
            f"CJ batch {batch.id}: anchor grades {unknown} are not in the scale {scale.name}"
        )
    return _AnchorPlan(scale=scale, context_source=context_source, grades=grades)


async def _resolve_scale(session: AsyncSession, batch: _Batch) -> tuple[GradeScale, str]:
    """The assignment's instruction, else the course's, else `swedish_8_anchor`."""
    if batch.assignment_id is not None:
        row = (
            await session.execute(
                text("select grade_scale from assessment_instructions where assignment_id = :a"),
                {"a": batch.assignment_id},
            )
        ).first()
        if row is not None:
            return scale_named(row[0]), "assignment"
    row = (
        await session.execute(
            text(
                "select grade_scale from assessment_instructions "
                "where assignment_id is null and course_id = :course order by id limit 1"
            ),
            {"course": batch.course_code},
        )
    ).first()
    if row is not None:
        return scale_named(row[0]), "course"
    return scale_named(DEFAULT_SCALE_NAME), "default"


async def _anchor_references(
    session: AsyncSession, assignment_id: str | None, scale_name: str
) -> list[_Reference]:
    if assignment_id is None:
        return []
    rows = await session.execute(
        text(
            "select id, grade, text_storage_id from anchor_essay_references "
            "where assignment_id = :a and grade_scale = :scale order by id"
        ),
        {"a": assignment_id, "scale": scale_name},
    )
    return [_Reference(row.id, row.grade, row.text_storage_id) for row in rows]


def _anchor_grade(batch: _Batch, anchor: _Essay, references: list[_Reference]) -> str:
    """anchor_grade, then known_grade, then the reference by text_storage_id, then by
    anchor_ref_id (production's order)."""
    for key in ("anchor_grade", "known_grade"):
        if anchor.metadata.get(key):
            return str(anchor.metadata[key])
    for reference in references:
        if reference.text_storage_id == anchor.text_storage_id:
            return reference.grade
    ref_id = str(anchor.metadata.get("anchor_ref_id"))
    for reference in references:
        if str(reference.id) == ref_id:
            return reference.grade
    raise FinalizationRefused(
        f"CJ batch {batch.id}: anchor {anchor.els_essay_id} has no readable grade "
        "(anchor_grade, known_grade, text_storage_id or anchor_ref_id)"
    )


async def _load_essays(session: AsyncSession, cj_batch_id: int) -> list[_Essay]:
    rows = await session.execute(
        text(
            "select els_essay_id, is_anchor, text_storage_id, processing_metadata "
            "from cj_processed_essays where cj_batch_id = :id order by els_essay_id"
        ),
        {"id": cj_batch_id},
    )
    return [
        _Essay(row[0], row[1], row[2], row[3] if isinstance(row[3], dict) else {}) for row in rows
    ]


async def _load_outcomes(session: AsyncSession, cj_batch_id: int) -> list[tuple[str, str]]:
    """(winner, loser) ids of the batch's completed comparisons, in id order."""
    rows = await session.execute(
        text(
            "select essay_a_els_id, essay_b_els_id, winner from cj_comparison_pairs "
            "where cj_batch_id = :id and winner in ('essay_a', 'essay_b') order by id"
        ),
        {"id": cj_batch_id},
    )
    return [(a, b) if winner == "essay_a" else (b, a) for a, b, winner in rows]


async def _store_scores(session: AsyncSession, scores: dict[str, scoring.EssayScore]) -> int:
    if scores:
        await session.execute(
            text(
                "update cj_processed_essays set current_bt_score = :score, current_bt_se = :se, "
                "comparison_count = :count, updated_at = now() where els_essay_id = :id"
            ),
            [
                {"score": s.score, "se": s.se, "count": s.comparison_count, "id": essay_id}
                for essay_id, s in scores.items()
            ],
        )
    return len(scores)


async def _store_projections(
    session: AsyncSession,
    cj_batch_id: int,
    plan: _AnchorPlan,
    projections: dict[str, scoring.GradeProjection],
    scores: dict[str, scoring.EssayScore],
) -> int:
    rows = [
        {
            "essay_id": essay_id,
            "batch_id": cj_batch_id,
            "grade": projection.primary_grade,
            "scale": plan.scale.name,
            "confidence": projection.confidence_score,
            "label": projection.confidence_label,
            "metadata": Json(
                {
                    "grade_probabilities": projection.probabilities,
                    "bt_score": scores[essay_id].score,
                    "bt_se": scores[essay_id].se,
                    "comparison_count": scores[essay_id].comparison_count,
                }
            ),
            "prior": projection.population_prior,
            "normalized": projection.normalized_score,
        }
        for essay_id, projection in projections.items()
    ]
    await session.execute(
        text(
            "insert into grade_projections (els_essay_id, cj_batch_id, primary_grade, "
            "grade_scale, confidence_score, confidence_label, calculation_metadata, "
            "population_prior, normalized_score, created_at) "
            "values (:essay_id, :batch_id, :grade, :scale, :confidence, :label, :metadata, "
            ":prior, :normalized, now()) "
            "on conflict (els_essay_id, cj_batch_id) do update set "
            "primary_grade = excluded.primary_grade, grade_scale = excluded.grade_scale, "
            "confidence_score = excluded.confidence_score, "
            "confidence_label = excluded.confidence_label, "
            "calculation_metadata = excluded.calculation_metadata, "
            "population_prior = excluded.population_prior, "
            "normalized_score = excluded.normalized_score, created_at = excluded.created_at"
        ),
        rows,
    )
    return len(rows)


async def _set_state(session: AsyncSession, cj_batch_id: int, state: str) -> None:
    await session.execute(
        text(
            "update cj_batch_states set state = cast(:state as cj_batch_state_enum), "
            "last_activity_at = now() where batch_id = :id"
        ),
        {"state": state, "id": cj_batch_id},
    )


async def _model_attribution(
    session: AsyncSession, cj_batch_id: int, settings: FinalizerSettings
) -> tuple[str, str]:
    """(provider, model): the most frequent pair in the callbacks' metadata of pairs without
    an error, else the settings' defaults."""
    row = (
        await session.execute(
            text(
                "select processing_metadata->>'provider' as provider, "
                "processing_metadata->>'model' as model, count(*) as n "
                "from cj_comparison_pairs where cj_batch_id = :id and error_code is null "
                "and processing_metadata->>'provider' is not null "
                "and processing_metadata->>'model' is not null "
                "group by 1, 2 order by n desc, provider, model limit 1"
            ),
            {"id": cj_batch_id},
        )
    ).first()
    if row is None:
        return settings.default_llm_provider, settings.default_llm_model
    return row.provider, row.model


def _batch_facts(batch: _Batch) -> events.BatchFacts:
    return events.BatchFacts(
        cj_batch_id=batch.id,
        bos_batch_id=batch.bos_batch_id,
        correlation_id=batch.correlation_id,
        assignment_id=batch.assignment_id,
        course_code=batch.course_code,
        user_id=batch.user_id or "",
        org_id=batch.org_id,
        created_at=batch.created_at or datetime.now(UTC),
    )


def _ranking(
    essays: list[_Essay], scores: dict[str, scoring.EssayScore]
) -> list[events.RankedEssay]:
    """Every essay, anchors included, by BT score descending (unscored last), ranked 1..n."""

    def key(essay: _Essay) -> tuple[bool, float, str]:
        score = scores.get(essay.els_essay_id)
        return (score is None, -score.score if score else 0.0, essay.els_essay_id)

    ordered = sorted(essays, key=key)
    return [
        events.RankedEssay(
            essay.els_essay_id,
            rank,
            scores[essay.els_essay_id].score if essay.els_essay_id in scores else None,
            essay.is_anchor,
        )
        for rank, essay in enumerate(ordered, start=1)
    ]


async def _insert_outbox_rows(session: AsyncSession, rows: list[events.OutboxRow]) -> int:
    for row in rows:
        await session.execute(
            text(
                "insert into event_outbox (aggregate_id, aggregate_type, event_type, "
                "event_data, topic, event_key, created_at) "
                "values (:aggregate_id, :aggregate_type, :event_type, :event_data, :topic, "
                ":aggregate_id, now())"
            ),
            {
                "aggregate_id": row.aggregate_id,
                "aggregate_type": row.aggregate_type,
                "event_type": row.event_type,
                "event_data": Json(row.event_data),
                "topic": row.topic,
            },
        )
    return len(rows)
