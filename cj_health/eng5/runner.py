"""`cj-health eng5 execute`: one ENG5 batch end to end through python_fix.

1. The upload, its state row and the essays (the 12 anchors with anchor metadata, plus
   generated students), each essay through
   `PostgreSQLCJEssayRepository.create_or_update_cj_processed_essay` on an AsyncSession.
2. Comparison pairs judged by the mock LLM judge (cj_health.eng5.judge).
3. Callbacks written like the service writes them: winner, confidence, justification,
   submitted_at/completed_at, and the state's counters and last_activity_at.
4. `BatchFinalizer.finalize_scoring` (skipped with finalize=False: the batch then waits in
   WAITING_CALLBACKS with every callback in).
5. The outbox relay's part: the batch's outbox rows are marked published (`published_at`),
   as production's relay does once Kafka accepts them; otherwise they would wait for ever
   and the batch would show EVENTS_UNPUBLISHED.

Steps 1 to 3 are ONE transaction on one AsyncSession: a run that dies there (the server
stopped, the connection lost, Ctrl-C) leaves no trace of the batch, never an upload without
essays or a batch waiting for callbacks that will never come. Step 4 is the finalizer's own
design (python_fix.finalizer, its commit order): a crash leaves the batch WAITING_CALLBACKS or
SCORING, never completed, with at most its projections written, and
`cj-health eng5 finalize CJ_BATCH_ID` completes it without projecting twice.

The finalizer is built as everywhere outside the service:
`BatchFinalizer(session_provider=p, **python_fix.default_collaborators(p))`, through
cj_health.service_adapter.

The artefact `assessment_run.execute.json` holds the ids, the counts, and each essay's
projected grade beside its hidden grade, with the exact and adjacent agreement. It holds no
essay text.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from psycopg.types.json import Json
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from cj_health.db import Database, connect, session_conninfo
from cj_health.eng5.anchors import (
    ALL_GRADES,
    ANCHORS,
    COURSE_CODE,
    DEV_ASSIGNMENT_ID,
    DEV_COURSE_ID,
    LANGUAGE,
    load_anchor_references,
    register_anchors_in,
)
from cj_health.eng5.essays import ROLE_STUDENT, GeneratedEssay, anchor_essays, student_essays
from cj_health.eng5.judge import JUDGE_MODEL, JUDGE_PROVIDER, MockJudge
from cj_health.errors import BatchNotFound, CjHealthError, Refused
from cj_health.paths import state_dir
from cj_health.schema import require_service_schema
from cj_health.service_adapter import (
    DatabaseSessionProvider,
    SyncBatchFinalizer,
    run_with_sessions,
)
from python_fix.finalizer import (
    OUTCOME_COMPLETED,
    BatchNotFoundError,
    FinalizationError,
    FinalizationRefused,
    FinalizationResult,
)
from python_fix.repository import PostgreSQLCJEssayRepository

ARTEFACT_NAME = "assessment_run.execute.json"
APPLICATION_NAME = "cj-health eng5"  # pg_stat_activity.application_name of the batch write
# 20 comparisons per essay: at 12, the default 12-student batch's scale separation reliability
# fell below min_reliability (0.7) for most seeds, so healthy ENG5 data raised LOW_RELIABILITY
# (measured over 40 seeds: at 20 none below 0.71).
COMPARISONS_PER_ESSAY = 20
MAX_STUDENTS = 500
RUNNER_USER_ID = "eng5-runner"
PROGRESS_STEPS = 5

Progress = Callable[[str], None]


@dataclass
class ExecuteResult:
    cj_batch_id: int
    bos_batch_id: str
    assignment_id: str
    seed: int
    students: int
    anchors: int
    comparisons: int
    comparisons_completed: int
    projections: int = 0
    agreement_exact: float | None = None
    agreement_adjacent: float | None = None
    upload_status: str = ""
    state: str = ""
    artefact_path: Path | None = None
    finalization: FinalizationResult | None = None
    essays: list[dict] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        lines = [
            f"CJ batch {self.cj_batch_id} (BOS batch {self.bos_batch_id}): "
            f"{self.upload_status} / {self.state}",
            f"essays: {self.students} students + {self.anchors} anchors; comparisons "
            f"{self.comparisons_completed}/{self.comparisons}; projections {self.projections}",
        ]
        if self.agreement_exact is not None and self.agreement_adjacent is not None:
            lines.append(
                f"agreement with hidden grades: exact {self.agreement_exact:.0%}, "
                f"adjacent {self.agreement_adjacent:.0%} ({self.students} students)"
            )
        if self.artefact_path is not None:
            lines.append(f"artefact: {self.artefact_path}")
        return lines


def default_out_dir(bos_batch_id: str) -> Path:
    return state_dir() / "runs" / bos_batch_id


def default_max_comparisons(essay_count: int) -> int:
    return min(math.ceil(essay_count * COMPARISONS_PER_ESSAY / 2), _distinct_pairs(essay_count))


def execute_batch(
    database: Database,
    *,
    assignment_id: str = DEV_ASSIGNMENT_ID,
    course_id: str = DEV_COURSE_ID,
    bos_batch_id: str | None = None,
    students: int = 12,
    max_comparisons: int | None = None,
    seed: int = 0,
    out_dir: Path | None = None,
    progress: Progress | None = None,
    finalize: bool = True,
) -> ExecuteResult:
    """Create one ENG5 batch end to end (see the module docstring)."""
    say = progress or (lambda _line: None)
    bos_batch_id = bos_batch_id or str(uuid.uuid4())
    _check_arguments(assignment_id, bos_batch_id, students, max_comparisons, seed)
    out_dir = out_dir or default_out_dir(bos_batch_id)
    _require_writable(out_dir)  # before the batch is committed, not after
    rng = np.random.default_rng(seed)
    judge = MockJudge(seed)

    with connect(database, autocommit=True) as conn:
        require_service_schema(conn, database)
        _require_new_bos_batch(conn, bos_batch_id)
        references = _ensure_anchors(conn, assignment_id, say)
    essays = anchor_essays(rng, references) + student_essays(rng, students)
    budget = max_comparisons or default_max_comparisons(len(essays))
    pairs = schedule_pairs(len(essays), budget, rng)
    plan = _BatchPlan(bos_batch_id, assignment_id, course_id, seed, students, budget)
    cj_batch_id = _write_batch(database, plan, essays, pairs, judge, say)
    say(f"committed CJ batch {cj_batch_id}: upload, essays, pairs and callbacks")

    result = ExecuteResult(
        cj_batch_id=cj_batch_id,
        bos_batch_id=bos_batch_id,
        assignment_id=assignment_id,
        seed=seed,
        students=students,
        anchors=len(references),
        comparisons=len(pairs),
        comparisons_completed=len(pairs),
    )
    if finalize:
        result.finalization = finalize_batch(database, cj_batch_id)
        say(result.finalization.message)
    _read_outcome(database, result, essays)
    result.artefact_path = _write_artefact(out_dir, result, course_id)
    return result


def schedule_pairs(essay_count: int, total: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """`total` distinct pairs (a, b) of essay indexes, spread evenly: rounds of random
    matchings (every essay once per round), skipping pairs already drawn."""
    total = min(total, _distinct_pairs(essay_count))
    chosen: list[tuple[int, int]] = []
    seen: set[frozenset[int]] = set()
    stale_rounds = 0
    while len(chosen) < total and stale_rounds < 20:
        order = rng.permutation(essay_count)
        before = len(chosen)
        for i in range(0, essay_count - 1, 2):
            a, b = int(order[i]), int(order[i + 1])
            if frozenset((a, b)) in seen:
                continue
            seen.add(frozenset((a, b)))
            chosen.append((a, b))
            if len(chosen) == total:
                break
        stale_rounds = stale_rounds + 1 if len(chosen) == before else 0
    if len(chosen) < total:  # nearly every pair drawn already: take the rest in random order
        rest = [
            (a, b)
            for a in range(essay_count)
            for b in range(a + 1, essay_count)
            if frozenset((a, b)) not in seen
        ]
        for index in rng.permutation(len(rest))[: total - len(chosen)]:
            chosen.append(rest[int(index)])
    return chosen


def agreement(pairs: list[tuple[str, str | None]]) -> tuple[float, float]:
    """Exact and adjacent (within one grade step) agreement of (hidden, projected) grades;
    an essay without a projection counts as a miss."""
    if not pairs:
        return 0.0, 0.0
    exact = adjacent = 0
    for hidden, projected in pairs:
        if projected is None:
            continue
        distance = abs(ALL_GRADES.index(hidden) - ALL_GRADES.index(projected))
        exact += distance == 0
        adjacent += distance <= 1
    return exact / len(pairs), adjacent / len(pairs)


def _distinct_pairs(essay_count: int) -> int:
    return essay_count * (essay_count - 1) // 2


def _check_arguments(
    assignment_id: str, bos_batch_id: str, students: int, max_comparisons: int | None, seed: int
) -> None:
    if seed < 0:
        raise CjHealthError(f"--seed must be 0 or more, got {seed}")
    if not 1 <= students <= MAX_STUDENTS:
        raise CjHealthError(f"--students must be between 1 and {MAX_STUDENTS}, got {students}")
    if max_comparisons is not None and max_comparisons < 1:
        raise CjHealthError(f"--max-comparisons must be at least 1, got {max_comparisons}")
    if not bos_batch_id or len(bos_batch_id) > 36:
        raise CjHealthError("--batch-id must be 1 to 36 characters (a BOS batch id)")
    if not assignment_id or len(assignment_id) > 100:
        raise CjHealthError("--assignment-id must be 1 to 100 characters")


def _require_writable(out_dir: Path) -> None:
    """The artefact folder exists (or is created) and takes a file, else one line, exit 2."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-probe.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise CjHealthError(
            f"--out-dir {out_dir} is not a writable folder ({exc.strerror or exc}); "
            "nothing was written"
        ) from None


def _require_new_bos_batch(conn: psycopg.Connection, bos_batch_id: str) -> None:
    row = conn.execute(
        "select id from cj_batch_uploads where bos_batch_id = %s limit 1", (bos_batch_id,)
    ).fetchone()
    if row is not None:
        raise CjHealthError(
            f"BOS batch {bos_batch_id} already exists (CJ batch {row[0]}); use another --batch-id"
        )


def _ensure_anchors(conn: psycopg.Connection, assignment_id: str, say: Progress) -> list:
    references = load_anchor_references(conn, assignment_id)
    instructed = conn.execute(
        "select 1 from assessment_instructions where assignment_id = %s", (assignment_id,)
    ).fetchone()
    if len(references) < len(ANCHORS) or instructed is None:
        with conn.transaction():
            register_anchors_in(conn, assignment_id)
        references = load_anchor_references(conn, assignment_id)
        say(f"registered {len(references)} ENG5 anchors for assignment {assignment_id}")
    return references


@dataclass(frozen=True)
class _BatchPlan:
    bos_batch_id: str
    assignment_id: str
    course_id: str
    seed: int
    students: int
    budget: int


def _write_batch(
    database: Database,
    plan: _BatchPlan,
    essays: list[GeneratedEssay],
    pairs: list[tuple[int, int]],
    judge: MockJudge,
    say: Progress,
) -> int:
    """Steps 1 to 3 of the module docstring in one transaction; returns the CJ batch id."""
    repository = PostgreSQLCJEssayRepository()

    async def write(provider: DatabaseSessionProvider) -> int:
        async with provider.session() as session, session.begin():
            cj_batch_id = await _create_batch(session, plan)
            say(f"writing CJ batch {cj_batch_id} (BOS batch {plan.bos_batch_id})")
            await _set_status(session, cj_batch_id, "FETCHING_CONTENT")
            for essay in essays:
                await repository.create_or_update_cj_processed_essay(
                    session,
                    cj_batch_id,
                    essay.els_essay_id,
                    essay.text_storage_id,
                    essay.text,
                    essay.processing_metadata,
                )
            await _set_status(session, cj_batch_id, "PERFORMING_COMPARISONS")
            await session.execute(
                text(
                    "update cj_batch_states set state = 'GENERATING_PAIRS', "
                    "last_activity_at = clock_timestamp() where batch_id = :id"
                ),
                {"id": cj_batch_id},
            )
            anchors = len(essays) - plan.students
            say(f"stored {anchors} anchors and {plan.students} student essays")
            pair_ids = await _submit_pairs(session, cj_batch_id, plan, essays, pairs)
            say(f"submitted {len(pair_ids)} comparisons to the mock judge")
            await _write_callbacks(session, cj_batch_id, essays, pairs, pair_ids, judge, say)
            return cj_batch_id

    return run_with_sessions(session_conninfo(database), write, application_name=APPLICATION_NAME)


async def _create_batch(session: AsyncSession, plan: _BatchPlan) -> int:
    """The upload (PENDING) and its state row (INITIALIZING), like the service creates them."""
    cj_batch_id = (
        await session.execute(
            text(
                "insert into cj_batch_uploads (bos_batch_id, event_correlation_id, language, "
                "course_code, expected_essay_count, status, processing_metadata, "
                "assignment_id, user_id) values (:bos, :correlation, :language, :course, "
                ":expected, 'PENDING', :metadata, :assignment, :user) returning id"
            ),
            {
                "bos": plan.bos_batch_id,
                "correlation": str(uuid.uuid4()),
                "language": LANGUAGE,
                "course": COURSE_CODE,
                "expected": plan.students,
                "metadata": Json(
                    {"runner": "eng5", "course_id": plan.course_id, "seed": plan.seed}
                ),
                "assignment": plan.assignment_id,
                "user": RUNNER_USER_ID,
            },
        )
    ).scalar_one()
    await session.execute(
        text(
            "insert into cj_batch_states (batch_id, state, total_budget, total_comparisons) "
            "values (:id, 'INITIALIZING', :budget, 0)"
        ),
        {"id": cj_batch_id, "budget": plan.budget},
    )
    return cj_batch_id


async def _set_status(session: AsyncSession, cj_batch_id: int, status: str) -> None:
    await session.execute(
        text(
            "update cj_batch_uploads set status = cast(:status as cj_batch_status_enum), "
            "updated_at = clock_timestamp() where id = :id"
        ),
        {"status": status, "id": cj_batch_id},
    )


async def _submit_pairs(
    session: AsyncSession,
    cj_batch_id: int,
    plan: _BatchPlan,
    essays: list[GeneratedEssay],
    pairs: list[tuple[int, int]],
) -> list[int]:
    """Insert the pending pairs and move the state to WAITING_CALLBACKS with its counters."""
    insert = text(
        "insert into cj_comparison_pairs (cj_batch_id, essay_a_els_id, essay_b_els_id, "
        "prompt_text, request_correlation_id, submitted_at, processing_metadata, "
        "pair_generation_mode) values (:batch, :a, :b, :prompt, :correlation, "
        "clock_timestamp(), :metadata, 'coverage') returning id"
    )
    pair_ids = []
    for a, b in pairs:
        essay_a, essay_b = essays[a], essays[b]
        prompt = (
            f"ENG5 assignment {plan.assignment_id}: compare essay A ({essay_a.els_essay_id}) "
            f"with essay B ({essay_b.els_essay_id}). Which is the better piece of writing?"
        )
        row = await session.execute(
            insert,
            {
                "batch": cj_batch_id,
                "a": essay_a.els_essay_id,
                "b": essay_b.els_essay_id,
                "prompt": prompt,
                "correlation": uuid.uuid4(),
                "metadata": Json({"judge": JUDGE_MODEL, "seed": plan.seed}),
            },
        )
        pair_ids.append(row.scalar_one())
    await session.execute(
        text(
            "update cj_batch_states set state = 'WAITING_CALLBACKS', total_comparisons = :n, "
            "submitted_comparisons = :n, current_iteration = 1, "
            "last_activity_at = clock_timestamp() where batch_id = :id"
        ),
        {"n": len(pairs), "id": cj_batch_id},
    )
    return pair_ids


async def _write_callbacks(
    session: AsyncSession,
    cj_batch_id: int,
    essays: list[GeneratedEssay],
    pairs: list[tuple[int, int]],
    pair_ids: list[int],
    judge: MockJudge,
    say: Progress,
) -> None:
    """Each callback as the service handles it: the pair's verdict (with the callback's
    `provider` and `model` in its metadata), then the state's completed counter, last
    activity and partial-scoring flag."""
    verdict_sql = text(
        "update cj_comparison_pairs set winner = :winner, confidence = :confidence, "
        "justification = :justification, raw_llm_response = :raw, "
        "completed_at = clock_timestamp(), processing_metadata = "
        "(coalesce(processing_metadata::jsonb, '{}') || jsonb_build_object('provider', "
        "cast(:provider as text), 'model', cast(:model as text)))::json where id = :id"
    )
    counter_sql = text(
        "update cj_batch_states set completed_comparisons = completed_comparisons + 1, "
        "last_activity_at = clock_timestamp(), partial_scoring_triggered = "
        "partial_scoring_triggered or (completed_comparisons + 1) * 100 "
        ">= completion_threshold_pct * total_comparisons where batch_id = :id"
    )
    report_every = max(1, len(pairs) // PROGRESS_STEPS)
    for done, ((a, b), pair_id) in enumerate(zip(pairs, pair_ids, strict=True), start=1):
        verdict = judge.compare(essays[a].hidden_quality, essays[b].hidden_quality)
        await session.execute(
            verdict_sql,
            {
                "winner": verdict.winner,
                "confidence": verdict.confidence,
                "justification": verdict.justification,
                "raw": verdict.raw_response,
                "provider": JUDGE_PROVIDER,
                "model": JUDGE_MODEL,
                "id": pair_id,
            },
        )
        await session.execute(counter_sql, {"id": cj_batch_id})
        if done % report_every == 0 or done == len(pairs):
            say(f"callbacks: {done}/{len(pairs)} comparisons judged")


def finalize_batch(
    database: Database, cj_batch_id: int, *, source: str = "cj-health eng5 execute"
) -> FinalizationResult:
    """Steps 4 and 5: `finalize_scoring` (its result), then the relay's part. Also finishes a
    batch that a stopped run left WAITING_CALLBACKS or SCORING (the finalizer completes it), or
    COMPLETED with its events unpublished (the finalizer does nothing, the relay publishes
    them)."""
    result = _finalize(database, cj_batch_id, source)
    try:
        _relay_events(database, cj_batch_id)
    except (CjHealthError, psycopg.OperationalError) as exc:
        raise CjHealthError(
            f"CJ batch {cj_batch_id} is finalized but its events are not published "
            f"({_first_line(exc)}); "
            f"`cj-health eng5 finalize {cj_batch_id}` publishes them"
        ) from None
    return result


def _relay_events(database: Database, cj_batch_id: int) -> None:
    """Publish the batch's outbox rows as production's relay does: set `published_at`."""
    with connect(database, autocommit=True) as conn:
        conn.execute(
            "update event_outbox o set published_at = now() from cj_batch_uploads u"
            " where u.id = %s and o.published_at is null"
            " and o.aggregate_id in (u.bos_batch_id, u.id::text)",
            (cj_batch_id,),
        )


def _finalize(database: Database, cj_batch_id: int, source: str) -> FinalizationResult:
    try:
        return SyncBatchFinalizer(session_conninfo(database)).finalize_scoring(
            cj_batch_id, source=source
        )
    except BatchNotFoundError as exc:
        raise BatchNotFound(str(exc)) from None
    except FinalizationRefused as exc:
        raise Refused(str(exc)) from None
    except FinalizationError as exc:
        raise CjHealthError(str(exc)) from None
    except psycopg.Error as exc:  # the failing phase rolled back; a rerun of the finalizer ends it
        raise CjHealthError(
            f"finalizing CJ batch {cj_batch_id} on {database.display} failed: "
            f"{_first_line(exc)}; "
            f"the batch is WAITING_CALLBACKS or SCORING, not completed, "
            f"`cj-health eng5 finalize {cj_batch_id}` completes it"
        ) from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _read_outcome(database: Database, result: ExecuteResult, essays: list[GeneratedEssay]):
    """Read back what the batch holds and compare projections with hidden grades."""
    with connect(database) as conn:
        status, state = conn.execute(
            "select u.status::text, s.state::text from cj_batch_uploads u "
            "join cj_batch_states s on s.batch_id = u.id where u.id = %s",
            (result.cj_batch_id,),
        ).fetchone()
        stored = {
            row[0]: row[1:]
            for row in conn.execute(
                "select e.els_essay_id, e.current_bt_score, e.current_bt_se, "
                "e.comparison_count, p.primary_grade, p.confidence_label "
                "from cj_processed_essays e left join grade_projections p "
                "on p.els_essay_id = e.els_essay_id and p.cj_batch_id = e.cj_batch_id "
                "where e.cj_batch_id = %s",
                (result.cj_batch_id,),
            )
        }
    result.upload_status, result.state = status, state
    result.essays = []
    for essay in essays:
        bt_score, bt_se, comparisons, grade, label = stored[essay.els_essay_id]
        result.essays.append(
            {
                "els_essay_id": essay.els_essay_id,
                "role": essay.role,
                "hidden_quality": round(essay.hidden_quality, 3),
                "hidden_grade": essay.hidden_grade,
                "projected_grade": grade,
                "confidence_label": label,
                "bt_score": bt_score,
                "bt_se": bt_se,
                "comparison_count": comparisons,
            }
        )
    student_rows = [row for row in result.essays if row["role"] == ROLE_STUDENT]
    result.projections = sum(row["projected_grade"] is not None for row in student_rows)
    if result.finalization is not None and result.finalization.outcome == OUTCOME_COMPLETED:
        result.agreement_exact, result.agreement_adjacent = agreement(
            [(row["hidden_grade"], row["projected_grade"]) for row in student_rows]
        )


def _write_artefact(out_dir: Path, result: ExecuteResult, course_id: str) -> Path:
    """Write the artefact whole or not at all (temporary file, then rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ARTEFACT_NAME
    finalization = asdict(result.finalization) if result.finalization else None
    document = {
        "cj_batch_id": result.cj_batch_id,
        "bos_batch_id": result.bos_batch_id,
        "assignment_id": result.assignment_id,
        "course_id": course_id,
        "seed": result.seed,
        "judge": {"model": JUDGE_MODEL, "provider": JUDGE_PROVIDER},
        "upload_status": result.upload_status,
        "state": result.state,
        "counts": {
            "students": result.students,
            "anchors": result.anchors,
            "comparisons": result.comparisons,
            "comparisons_completed": result.comparisons_completed,
            "projections": result.projections,
        },
        "agreement": {
            "exact": result.agreement_exact,
            "adjacent": result.agreement_adjacent,
            "students": result.students,
        },
        "finalization": finalization,
        "essays": result.essays,
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(path)
    return path

