"""The finalizer patch: `BatchFinalizer`, production's class with production's constructor and
three methods, driving a batch WAITING_CALLBACKS -> SCORING -> COMPLETED so that no crash
leaves it half-finished (Batch 20 root cause 2).

    BatchFinalizer(session_provider, batch_repository, comparison_repository,
                   essay_repository, event_publisher, content_client, settings,
                   grade_projector)
    await finalize_scoring(batch_id, correlation_id, log_extra, *, completion_status=None,
                           source=None) -> None
    await finalize_failure(batch_id, correlation_id, log_extra, *, failure_reason,
                           failure_details=None) -> None
    await finalize_single_essay(batch_id, correlation_id, log_extra) -> None

`session_provider.session()` gives an AsyncSession (asyncpg in the service, psycopg in the
project's tools: nothing here binds a driver's own types). The repositories are called with the
session the finalizer controls; the three outbox rows go into that session's transaction through
`event_publisher.outbox_manager.publish_to_outbox(..., session=session)`, and once it commits the
relay is woken (Redis `LPUSH outbox:wake:<service> wake` on the manager's `redis_client`), as
production's outbox does after each row.

Commit order of `finalize_scoring` (one session per transaction; C1..C3 are the commits):

  C1  phase 1: lock the upload and state rows, check the guard, WAITING_CALLBACKS -> SCORING.
  --  phase 2 opens its transaction, locks both rows again, re-checks the guard, fits
      Bradley-Terry and writes score, SE and comparison count (uncommitted), reads the ranking.
  C2  the grade projector stores the projections and commits them in ITS OWN session
      (production's `grade_projector.calculate_projections`, a plain INSERT), unless the batch
      already has projections: then they are read back instead and the projector is not called.
  --  upload status (completion_status, default COMPLETE_STABLE; COMPLETE_INSUFFICIENT_ESSAYS
      under two students) and completed_at; the three outbox rows; state SCORING -> COMPLETED.
  C3  phase 2 commits all of that at once; then the relay is woken.

Why no crash leaves a wrong batch:
- COMPLETE_* status, COMPLETED state, completed_at and the events are only ever committed
  together (C3), after the projections (C2): a batch is never COMPLETED without its
  projections or its events. A crash before C3 leaves it SCORING with an upload status that is
  not terminal (monitoring: SCORING_TOO_LONG), with at most the projections of C2.
- A rerun finds the batch SCORING and finishes it. The projections are written once: after C2
  they are in the table, so the rerun reads them back and never calls the projector (whose
  INSERT would collide with them). The BT fit is deterministic, so the rerun's scores are the
  ones the projections were made from.
- Two finalizers at once: every transaction first takes the rows' locks (upload, then state,
  always in that order), and the second one waits for the first's C3, then sees COMPLETED and
  does nothing. Phase 2 holds its locks while the projector runs in another session; the locks
  are FOR NO KEY UPDATE and the scores are non-key updates, so the projector's inserts into
  grade_projections, whose foreign keys take FOR KEY SHARE on the upload and essay rows, are
  not blocked (FOR UPDATE would block them: a deadlock through the application that
  PostgreSQL cannot see).

`finalize_failure` (ERROR_PROCESSING, state FAILED, completed_at,
`processing_metadata.failed_reason = {reason, timestamp, details}`, one CJAssessmentFailedV1
row with the caller's correlation id) and `finalize_single_essay` (COMPLETE_INSUFFICIENT_ESSAYS,
state COMPLETED, completed_at, BT score 0.0 for a lone student, the three rows) are each one
transaction.

The guard (production's first): an upload status COMPLETE_* or ERROR_* is terminal, nothing is
written; with a finished state (COMPLETED, FAILED, CANCELLED) that is a no-op, logged at INFO,
otherwise (e.g. COMPLETE_STABLE + WAITING_CALLBACKS, the Batch 20 wedge) a refusal. Then, for
`finalize_scoring`: COMPLETED state -> no-op; a state other than WAITING_CALLBACKS or SCORING,
a correlation id that is not a UUID, a scale whose grades the result event cannot carry
(`eng5_np_national_9_step`), no `user_id` (the resource event needs it), no anchor essays while
the assignment has registered anchors (the Batch 20 shape), an anchor without a readable grade
of the scale, an event publisher whose outbox cannot join the transaction -> refused.

Never raises where production returns None: the three methods log a refusal, a missing batch or
a rolled-back failure at ERROR with the reason and return None; the batch stays as it was and the
monitoring flags it. `finalize_scoring_result` is the same work returning a `FinalizationResult`
and raising (`FinalizationRefused`, `BatchNotFoundError`, the database's error) for callers that
report outcomes (the project's CLI). Every record on the `python_fix.finalizer` logger carries
`batch_id`, `completion_source` (default `workflow_continuation`), `correlation_id`,
`from_state`, `to_state`, `finalization` and `outcome`, plus the caller's `log_extra`; never
essay text.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from python_fix import events, scoring
from python_fix.context import anchor_grade, resolve_context
from python_fix.models import CJBatchStateEnum, CJBatchStatusEnum
from python_fix.projector import GradeProjectionSummary

PHASE1_READY = "phase1_ready"
PHASE1_COMMITTED = "phase1_committed"
PHASE2_STEPS = ("scores", "projections", "upload_status", "events", "state")
PHASE2_COMMITTED = "phase2_committed"
STEPS = (PHASE1_READY, PHASE1_COMMITTED, *PHASE2_STEPS, PHASE2_COMMITTED)
MIN_STUDENT_ESSAYS = 2
DEFAULT_SOURCE = "workflow_continuation"
DEFAULT_COMPLETION_STATUS = CJBatchStatusEnum.COMPLETE_STABLE
COMPLETION_STATUSES = tuple(s for s in CJBatchStatusEnum if s.startswith("COMPLETE"))
TERMINAL_PREFIXES = ("COMPLETE", "ERROR")
FINISHED_STATES = ("COMPLETED", "FAILED", "CANCELLED")
SCORABLE_STATES = ("WAITING_CALLBACKS", "SCORING")

OUTCOME_COMPLETED = "completed"
OUTCOME_INSUFFICIENT = "insufficient_essays"
OUTCOME_FAILED = "failed"
OUTCOME_NO_OP = "already_final"

logger = logging.getLogger(__name__)
# LogRecord attributes that a caller's log_extra must not overwrite.
_RESERVED_LOG_KEYS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class FinalizationError(Exception):
    """Finalization could not run; the message says why in one line."""


class BatchNotFoundError(FinalizationError):
    """No CJ batch with that id."""


class FinalizationRefused(FinalizationError):
    """The guard refused the batch; nothing was written."""


@dataclass
class FinalizationResult:
    cj_batch_id: int
    outcome: str = ""
    transitions: list[str] = field(default_factory=list)
    scores_written: int = 0
    projections_written: int = 0
    projections_reused: bool = False
    events_written: int = 0
    upload_status: str | None = None
    grade_scale: str | None = None
    message: str = ""


@dataclass
class _Call:
    """One call: what every log record of it carries, and the state it last saw."""

    batch_id: int
    correlation_id: Any
    finalization: str
    source: str
    log_extra: Mapping[str, Any]
    state: str | None = None

    def log(self, level: int, message: str, to_state: str | None = None, **fields: Any) -> None:
        exc_info = fields.pop("exc_info", None)
        extra = {k: v for k, v in self.log_extra.items() if k not in _RESERVED_LOG_KEYS}
        extra.update(
            batch_id=self.batch_id,
            completion_source=self.source,
            correlation_id=str(self.correlation_id),
            finalization=self.finalization,
            from_state=self.state,
            to_state=to_state or self.state,
            **fields,
        )
        logger.log(level, message, extra=extra, exc_info=exc_info)


@dataclass
class _Batch:
    """The locked upload and state rows (the batch repository's objects)."""

    upload: Any
    state_row: Any

    @property
    def id(self) -> int:
        return self.upload.id

    @property
    def status(self) -> str:
        return _label(self.upload.status)

    @property
    def state(self) -> str:
        return _label(self.state_row.state)

    def facts(self) -> events.BatchFacts:
        upload = self.upload
        return events.BatchFacts(
            cj_batch_id=upload.id,
            bos_batch_id=upload.bos_batch_id,
            correlation_id=uuid.UUID(upload.event_correlation_id),
            assignment_id=upload.assignment_id,
            course_code=upload.course_code,
            user_id=upload.user_id or "",
            org_id=upload.org_id,
            created_at=upload.created_at or datetime.now(UTC),
        )


class BatchFinalizer:
    """Finalizes CJ batches (see the module docstring).

    `step_hook`, when set, is called with each name of STEPS as the finalization reaches it:
    PHASE1_READY before C1, PHASE1_COMMITTED after it, each of PHASE2_STEPS after that step
    (before C3), PHASE2_COMMITTED after C3. Tests kill or fail the finalizer there; the bench
    times the steps.
    """

    def __init__(
        self,
        session_provider: Any,
        batch_repository: Any,
        comparison_repository: Any,
        essay_repository: Any,
        event_publisher: Any,
        content_client: Any,
        settings: Any,
        grade_projector: Any,
    ) -> None:
        self.session_provider = session_provider
        self.batch_repository = batch_repository
        self.comparison_repository = comparison_repository
        self.essay_repository = essay_repository
        self.event_publisher = event_publisher
        self.content_client = content_client
        self.settings = settings
        self.grade_projector = grade_projector
        self.step_hook: Callable[[str], None] | None = None

    # --- production's three methods: log, never raise, return None -------------------------

    async def finalize_scoring(
        self,
        batch_id: int,
        correlation_id: uuid.UUID,
        log_extra: Mapping[str, Any],
        *,
        completion_status: Any = None,
        source: str | None = None,
    ) -> None:
        with contextlib.suppress(Exception):  # logged at ERROR where it was raised
            await self.finalize_scoring_result(
                batch_id,
                correlation_id,
                log_extra,
                completion_status=completion_status,
                source=source,
            )

    async def finalize_failure(
        self,
        batch_id: int,
        correlation_id: uuid.UUID,
        log_extra: Mapping[str, Any],
        *,
        failure_reason: str,
        failure_details: dict[str, Any] | None = None,
    ) -> None:
        call = self._call(batch_id, correlation_id, log_extra, "failure", None)
        with contextlib.suppress(Exception):
            await self._logged(call, self._fail(call, failure_reason, failure_details))

    async def finalize_single_essay(
        self, batch_id: int, correlation_id: uuid.UUID, log_extra: Mapping[str, Any]
    ) -> None:
        call = self._call(batch_id, correlation_id, log_extra, "single_essay", None)
        with contextlib.suppress(Exception):
            await self._logged(call, self._single_essay(call))

    async def finalize_scoring_result(
        self,
        batch_id: int,
        correlation_id: uuid.UUID,
        log_extra: Mapping[str, Any],
        *,
        completion_status: Any = None,
        source: str | None = None,
    ) -> FinalizationResult:
        """`finalize_scoring` for callers that want the outcome: returns what it did, raises
        FinalizationRefused, BatchNotFoundError or the database's error (after logging)."""
        call = self._call(batch_id, correlation_id, log_extra, "scoring", source)
        return await self._logged(call, self._score(call, completion_status))

    # --- the three finalizations ------------------------------------------------------------

    async def _score(self, call: _Call, completion_status: Any) -> FinalizationResult:
        status = _completion_status(completion_status)
        result = FinalizationResult(call.batch_id)
        async with self._transaction() as session:
            batch = await self._lock(session, call)
            if self._settled(batch, call, result, finished=("COMPLETED",)):
                return result
            self._require_state(batch, SCORABLE_STATES)
            await self._scoring_guard(session, batch)
            waiting = batch.state == "WAITING_CALLBACKS"
            if waiting:
                await self.batch_repository.update_batch_state(
                    session, batch.id, CJBatchStateEnum.SCORING
                )
            self._step(PHASE1_READY)
        if waiting:
            result.transitions.append("WAITING_CALLBACKS->SCORING")
            call.log(logging.INFO, f"CJ batch {call.batch_id}: WAITING_CALLBACKS -> SCORING",
                     "SCORING", phase="phase1")  # fmt: skip
            call.state = "SCORING"
        self._step(PHASE1_COMMITTED)

        async with self._transaction() as session:
            batch = await self._lock(session, call)
            if self._settled(batch, call, result, finished=("COMPLETED",)):
                return result
            if batch.state != "SCORING":
                raise FinalizationRefused(
                    f"CJ batch {batch.id} left SCORING (now {batch.state}) before scoring"
                )
            result.grade_scale = (await self._scoring_guard(session, batch)).scale.name
            await self._complete(session, batch, call, result, status)
        self._step(PHASE2_COMMITTED)
        await self._wake_relay()
        call.log(logging.INFO, f"CJ batch {call.batch_id}: SCORING -> COMPLETED (upload status "
                 f"{result.upload_status}, {result.events_written} events)", "COMPLETED",
                 upload_status=result.upload_status, grade_scale=result.grade_scale,
                 outcome=result.outcome)  # fmt: skip
        return result

    async def _complete(
        self,
        session: AsyncSession,
        batch: _Batch,
        call: _Call,
        result: FinalizationResult,
        completion_status: CJBatchStatusEnum,
    ) -> None:
        """Phase 2 after the guard: scores, projections, status, events, COMPLETED."""
        essays = await self.essay_repository.get_essays_for_cj_batch(session, batch.id)
        students = [essay for essay in essays if not essay.is_anchor]
        insufficient = len(students) < MIN_STUDENT_ESSAYS
        pairs = await self.comparison_repository.get_valid_comparisons_for_batch(
            session, batch.id
        )
        if not insufficient:
            fitted = scoring.fit_bradley_terry(
                [essay.els_essay_id for essay in essays], _outcomes(pairs)
            )
            for essay in essays:
                score = fitted[essay.els_essay_id]
                essay.current_bt_score = score.score
                essay.current_bt_se = score.se
                essay.comparison_count = score.comparison_count
            await session.flush()
            result.scores_written = len(fitted)
        self._step("scores")

        rankings = await self.essay_repository.get_final_cj_rankings(session, batch.id)
        summary = await self._projections(session, batch, call, rankings, insufficient, result)
        self._step("projections")

        status = completion_status
        if insufficient:
            status = CJBatchStatusEnum.COMPLETE_INSUFFICIENT_ESSAYS
        await self._close_upload(session, batch, status)
        result.upload_status = status.value
        self._step("upload_status")

        rows = events.build_outbox_rows(
            batch.facts(), _ranked(rankings), _grades(summary), self._model_attribution(pairs)
        )
        result.events_written = await self._write_outbox(session, rows)
        self._step("events")

        await self.batch_repository.update_batch_state(
            session, batch.id, CJBatchStateEnum.COMPLETED
        )
        result.transitions.append("SCORING->COMPLETED")
        result.outcome = OUTCOME_INSUFFICIENT if insufficient else OUTCOME_COMPLETED
        reused = " (already stored)" if result.projections_reused else ""
        result.message = (
            f"CJ batch {batch.id} finalized: {status.value}, {result.scores_written} scores, "
            f"{result.projections_written} projections{reused}, {result.events_written} events"
        )
        self._step("state")

    async def _projections(
        self,
        session: AsyncSession,
        batch: _Batch,
        call: _Call,
        rankings: list[dict[str, Any]],
        insufficient: bool,
        result: FinalizationResult,
    ) -> Any:
        """The batch's projections: those a previous run committed, else the projector's."""
        stored = await _stored_projections(session, batch.id)
        if stored.projections_available:
            result.projections_written = len(stored.primary_grades)
            result.projections_reused = True
            call.log(logging.INFO, f"CJ batch {batch.id}: {len(stored.primary_grades)} "
                     "projections already stored by an earlier run; the projector is not "
                     "called again", outcome="projections_reused")  # fmt: skip
            return stored
        if insufficient:
            return GradeProjectionSummary()
        summary = await self.grade_projector.calculate_projections(
            rankings,
            batch.id,
            batch.upload.assignment_id,
            batch.upload.course_code,
            self.content_client,
            call.correlation_id,
        )
        if summary is not None and summary.projections_available:
            result.projections_written = len(summary.primary_grades)
        return summary

    async def _fail(
        self, call: _Call, reason: str, details: dict[str, Any] | None
    ) -> FinalizationResult:
        result = FinalizationResult(call.batch_id)
        async with self._transaction() as session:
            batch = await self._lock(session, call)
            if self._settled(batch, call, result, finished=FINISHED_STATES):
                return result
            self._outbox_manager()
            now = _naive_utc_now()
            metadata = dict(batch.upload.processing_metadata or {})
            metadata["failed_reason"] = {
                "reason": reason,
                "timestamp": now.isoformat(),
                "details": details or {},
            }
            batch.upload.processing_metadata = metadata
            await self._close_upload(session, batch, CJBatchStatusEnum.ERROR_PROCESSING, now)
            await self.batch_repository.update_batch_state(
                session, batch.id, CJBatchStateEnum.FAILED
            )
            row = events.build_failure_row(batch.facts(), _uuid(call.correlation_id), reason,
                                           details)  # fmt: skip
            result.events_written = await self._write_outbox(session, [row])
        await self._wake_relay()
        result.outcome = OUTCOME_FAILED
        result.upload_status = CJBatchStatusEnum.ERROR_PROCESSING.value
        result.transitions.append(f"{call.state}->FAILED")
        call.log(logging.INFO, f"CJ batch {call.batch_id}: {call.state} -> FAILED ({reason})",
                 "FAILED", outcome=OUTCOME_FAILED, failure_reason=reason)  # fmt: skip
        return result

    async def _single_essay(self, call: _Call) -> FinalizationResult:
        result = FinalizationResult(call.batch_id)
        async with self._transaction() as session:
            batch = await self._lock(session, call)
            if self._settled(batch, call, result, finished=FINISHED_STATES):
                return result
            _require_upload_facts(batch)
            self._outbox_manager()
            essays = await self.essay_repository.get_essays_for_cj_batch(session, batch.id)
            students = [essay.els_essay_id for essay in essays if not essay.is_anchor]
            if len(students) == 1:
                await self.essay_repository.update_essay_scores_in_batch(
                    session, batch.id, {students[0]: 0.0}
                )
                result.scores_written = 1
            rankings = await self.essay_repository.get_final_cj_rankings(session, batch.id)
            status = CJBatchStatusEnum.COMPLETE_INSUFFICIENT_ESSAYS
            await self._close_upload(session, batch, status)
            pairs = await self.comparison_repository.get_valid_comparisons_for_batch(
                session, batch.id
            )
            rows = events.build_outbox_rows(
                batch.facts(), _ranked(rankings), {}, self._model_attribution(pairs)
            )
            result.events_written = await self._write_outbox(session, rows)
            await self.batch_repository.update_batch_state(
                session, batch.id, CJBatchStateEnum.COMPLETED
            )
        await self._wake_relay()
        result.outcome = OUTCOME_INSUFFICIENT
        result.upload_status = status.value
        result.transitions.append(f"{call.state}->COMPLETED")
        call.log(logging.INFO, f"CJ batch {call.batch_id}: {call.state} -> COMPLETED "
                 f"({status.value}, {len(students)} student essays)", "COMPLETED",
                 upload_status=status.value, outcome=OUTCOME_INSUFFICIENT)  # fmt: skip
        return result

    # --- shared steps -----------------------------------------------------------------------

    def _call(self, batch_id, correlation_id, log_extra, finalization, source) -> _Call:
        extra = dict(log_extra or {})
        source = source or extra.get("completion_source") or DEFAULT_SOURCE
        return _Call(batch_id, correlation_id, finalization, str(source), extra)

    async def _logged(self, call: _Call, work) -> FinalizationResult:
        """Run one finalization; log why it did not happen (at ERROR) before re-raising."""
        try:
            return await work
        except BatchNotFoundError as exc:
            call.log(logging.ERROR, str(exc), outcome="not_found")
            raise
        except (FinalizationRefused, ValueError) as exc:
            call.log(logging.ERROR, f"refused: {exc}; nothing written", outcome="refused")
            if isinstance(exc, FinalizationRefused):
                raise
            raise FinalizationRefused(str(exc)) from exc
        except Exception as exc:
            call.log(logging.ERROR, f"CJ batch {call.batch_id}: {call.finalization} rolled back "
                     f"({type(exc).__name__}: {_first_line(exc)}); the batch stays "
                     f"{call.state}", outcome="rolled_back", exc_info=True)  # fmt: skip
            raise

    def _step(self, step: str) -> None:
        if self.step_hook is not None:
            self.step_hook(step)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits when the block ends and rolls back if it
        raises (the session provider may or may not do either)."""
        async with self.session_provider.session() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    async def _lock(self, session: AsyncSession, call: _Call) -> _Batch:
        """Lock the upload row, then the state row (always in this order, FOR NO KEY UPDATE:
        see the module docstring), and read both through the batch repository."""
        locked = await session.execute(
            text("select id from cj_batch_uploads where id = :id for no key update"),
            {"id": call.batch_id},
        )
        if locked.first() is None:
            raise BatchNotFoundError(f"CJ batch {call.batch_id} does not exist")
        await session.execute(
            text("select batch_id from cj_batch_states where batch_id = :id for no key update"),
            {"id": call.batch_id},
        )
        upload = await self.batch_repository.get_cj_batch_upload(session, call.batch_id)
        state_row = await self.batch_repository.get_batch_state(session, call.batch_id)
        if upload is None:
            raise BatchNotFoundError(f"CJ batch {call.batch_id} does not exist")
        if state_row is None:
            raise FinalizationRefused(
                f"CJ batch {call.batch_id} has no state row (cj_batch_states)"
            )
        batch = _Batch(upload, state_row)
        call.state = batch.state
        return batch

    def _settled(
        self, batch: _Batch, call: _Call, result: FinalizationResult, finished: Sequence[str]
    ) -> bool:
        """Production's terminal-status guard, then the state: True for a no-op (logged);
        raises for a terminal status with an unfinished state."""
        terminal = batch.status.startswith(TERMINAL_PREFIXES)
        if terminal and batch.state not in FINISHED_STATES:
            raise FinalizationRefused(
                f"CJ batch {batch.id} has the terminal upload status {batch.status} while its "
                f"state is {batch.state} (a wedged batch, as Batch 20 was)"
            )
        if terminal or batch.state in finished:
            result.outcome = OUTCOME_NO_OP
            result.upload_status = batch.status
            result.message = (
                f"CJ batch {batch.id} ({batch.status}) is already {batch.state}; nothing to do"
            )
            call.log(logging.INFO, result.message, outcome="no_op")
            return True
        return False

    def _require_state(self, batch: _Batch, allowed: Sequence[str]) -> None:
        if batch.state not in allowed:
            raise FinalizationRefused(
                f"CJ batch {batch.id} is {batch.state}; this finalization needs "
                f"{' or '.join(allowed)}"
            )

    async def _scoring_guard(self, session: AsyncSession, batch: _Batch):
        """The checks of the module docstring; returns the batch's grading context.

        Every check runs, and one refusal names them all, the main cause first: what stops
        the grades (no anchors, an anchor without a grade, a scale the result event
        rejects) before what only stops an event (no UUID correlation id, no user_id), so
        the Batch 20 shape is refused for its anchors even when its user_id is missing too.
        """
        self._outbox_manager()
        context = await resolve_context(
            session, batch.upload.assignment_id, batch.upload.course_code
        )
        essays = await self.essay_repository.get_essays_for_cj_batch(session, batch.id)
        reasons = [
            *_grading_refusals(batch, context, essays),
            *_upload_refusals(batch),
        ]
        if reasons:
            main, *also = reasons
            raise FinalizationRefused(
                f"CJ batch {batch.id}: {main}" + (f" (also: {'; '.join(also)})" if also else "")
            )
        return context

    async def _close_upload(
        self,
        session: AsyncSession,
        batch: _Batch,
        status: CJBatchStatusEnum,
        now: datetime | None = None,
    ) -> None:
        await self.batch_repository.update_cj_batch_status(session, batch.id, status)
        batch.upload.completed_at = now or _naive_utc_now()
        await session.flush()

    def _outbox_manager(self) -> Any:
        manager = getattr(self.event_publisher, "outbox_manager", None)
        if not callable(getattr(manager, "publish_to_outbox", None)):
            raise FinalizationRefused(
                "the event publisher has no outbox_manager.publish_to_outbox: the events "
                "cannot join the finalizer's transaction"
            )
        return manager

    async def _write_outbox(self, session: AsyncSession, rows: list[events.OutboxRow]) -> int:
        manager = self._outbox_manager()
        for row in rows:
            await manager.publish_to_outbox(
                aggregate_type=row.aggregate_type,
                aggregate_id=row.aggregate_id,
                event_type=row.event_type,
                event_data=row.envelope(),
                topic=row.topic,
                session=session,
            )
        return len(rows)

    async def _wake_relay(self) -> None:
        service = getattr(self.settings, "SERVICE_NAME", None) or events.SOURCE_SERVICE
        await events.wake_relay(self._outbox_manager(), service)

    def _model_attribution(self, pairs: Sequence[Any]) -> tuple[str, str]:
        """(provider, model): the most frequent pair named in the metadata of the pairs without
        an error (ties: the first by name), else the settings' defaults."""
        named = Counter()
        for pair in pairs:
            metadata = pair.processing_metadata
            if pair.error_code is None and isinstance(metadata, Mapping):
                provider, model = metadata.get("provider"), metadata.get("model")
                if provider and model:
                    named[(str(provider), str(model))] += 1
        if named:
            return min(named, key=lambda key: (-named[key], key))
        return (
            _label(getattr(self.settings, "DEFAULT_LLM_PROVIDER", "openai")),
            _label(getattr(self.settings, "DEFAULT_LLM_MODEL", "gpt-5.1")),
        )


def _label(value: Any) -> str:
    return str(getattr(value, "value", value))


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _naive_utc_now() -> datetime:
    """completed_at is `timestamp without time zone`, written as naive UTC (as production)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def _completion_status(value: Any) -> CJBatchStatusEnum:
    """The upload status to finish with: a CJBatchStatusEnum member or its label."""
    if value is None:
        return DEFAULT_COMPLETION_STATUS
    status = _label(value)
    if status not in COMPLETION_STATUSES:
        raise FinalizationRefused(
            f"completion_status must be one of {', '.join(COMPLETION_STATUSES)}, got {status!r}"
        )
    return CJBatchStatusEnum(status)


def _grading_refusals(batch: _Batch, context: Any, essays: Sequence[Any]) -> list[str]:
    """Why no grades could be projected for the batch, the main cause first."""
    reasons = []
    anchors = [essay for essay in essays if essay.is_anchor]
    if context.references and not anchors:
        reasons.append(
            f"no anchor essays (is_anchor) but its assignment has {len(context.references)} "
            "registered anchors; refusing to finalize without projections (the Batch 20 shape)"
        )
    for anchor in anchors:
        grade = anchor_grade(
            {"processing_metadata": anchor.processing_metadata,
             "text_storage_id": anchor.text_storage_id},
            context.references,
        )  # fmt: skip
        if grade not in context.scale.grades:
            reasons.append(
                f"anchor {anchor.els_essay_id} has "
                + (f"grade {grade!r}, not a grade of {context.scale.name}" if grade else
                   "no readable grade (anchor_grade, known_grade, text_storage_id or "
                   "anchor_ref_id)")
            )  # fmt: skip
    if not context.scale.fits_result_event:
        reasons.append(
            f"grade scale {context.scale.name} gives grades "
            f"({', '.join(context.scale.all_grades)}) that AssessmentResultV1.letter_grade "
            "rejects (a known production contract gap)"
        )
    return reasons


def _upload_refusals(batch: _Batch) -> list[str]:
    """What the upload lacks for the finalization's events."""
    reasons = []
    try:
        uuid.UUID(batch.upload.event_correlation_id)
    except (TypeError, ValueError):
        reasons.append("the upload's event_correlation_id is not a UUID")
    if not batch.upload.user_id:
        reasons.append("no user_id; the resource consumption event needs one")
    return reasons


def _require_upload_facts(batch: _Batch) -> None:
    """Refuse a finalization whose events the upload cannot fill (see _upload_refusals)."""
    reasons = _upload_refusals(batch)
    if reasons:
        raise FinalizationRefused(f"CJ batch {batch.id}: {'; '.join(reasons)}")


def _outcomes(pairs: Sequence[Any]) -> list[tuple[str, str]]:
    """(winner, loser) ids of the judged pairs, in pair id order."""
    judged = sorted((p for p in pairs if p.winner in ("essay_a", "essay_b")), key=lambda p: p.id)
    return [
        (p.essay_a_els_id, p.essay_b_els_id)
        if p.winner == "essay_a"
        else (p.essay_b_els_id, p.essay_a_els_id)
        for p in judged
    ]


async def _stored_projections(session: AsyncSession, cj_batch_id: int) -> GradeProjectionSummary:
    rows = (
        await session.execute(
            text(
                "select els_essay_id, primary_grade, confidence_score, confidence_label "
                "from grade_projections where cj_batch_id = :id"
            ),
            {"id": cj_batch_id},
        )
    ).all()
    return GradeProjectionSummary(
        projections_available=bool(rows),
        primary_grades={row[0]: row[1] for row in rows},
        confidence_scores={row[0]: row[2] for row in rows},
        confidence_labels={row[0]: row[3] for row in rows},
    )


def _ranked(rankings: Sequence[Mapping[str, Any]]) -> list[events.RankedEssay]:
    return [
        events.RankedEssay(
            str(r["els_essay_id"]), int(r["rank"]), r.get("bradley_terry_score"),
            bool(r.get("is_anchor")),
        )
        for r in rankings
    ]  # fmt: skip


def _grades(summary: Any) -> dict[str, events.Grade]:
    if summary is None or not summary.projections_available:
        return {}
    return {
        essay_id: events.Grade(
            grade,
            float(summary.confidence_scores.get(essay_id, 0.0)),
            summary.confidence_labels.get(essay_id, "LOW"),
        )
        for essay_id, grade in summary.primary_grades.items()
    }
