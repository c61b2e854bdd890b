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
# 20 comparisons per essay: at 12, the default 12-student batch's scale separation reliability
# fell below min_reliability (0.7) for most seeds, so healthy ENG5 data raised LOW_RELIABILITY
# (measured over 40 seeds: at 20 none below 0.71). Edit by helper-3 for the detection matrix.
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
        _require_schema(conn, database)
        _require_new_bos_batch(conn, bos_batch_id)
        references = _ensure_anchors(conn, assignment_id, say)
        essays = anchor_essays(rng, references) + student_essays(rng, students)
        budget = max_comparisons or default_max_comparisons(len(essays))
        pairs = schedule_pairs(len(essays), budget, rng)
        cj_batch_id = _create_batch(
            conn, bos_batch_id, assignment_id, course_id, seed, students, budget
        )
        say(f"created CJ batch {cj_batch_id} (BOS batch {bos_batch_id})")
        _store_essays(database, cj_batch_id, essays)
        say(f"stored {len(references)} anchors and {students} student essays")
        pair_ids = _submit_pairs(conn, cj_batch_id, assignment_id, essays, pairs, seed)
        say(f"submitted {len(pair_ids)} comparisons to the mock judge")
        _write_callbacks(conn, cj_batch_id, essays, pairs, pair_ids, judge, say)

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
        result.finalization = _finalize(database, cj_batch_id)
        say(result.finalization.message)
        _relay_events(database, cj_batch_id, bos_batch_id)
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


def _require_schema(conn: psycopg.Connection, database: Database) -> None:
    row = conn.execute("select to_regclass('cj_batch_uploads')").fetchone()
    if row[0] is None:
        raise CjHealthError(
            f"{database.display} has no CJ service tables; run `cj-health db init` first"
        )


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


def _create_batch(
    conn: psycopg.Connection,
    bos_batch_id: str,
    assignment_id: str,
    course_id: str,
    seed: int,
    students: int,
    budget: int,
) -> int:
    """The upload (PENDING) and its state row (INITIALIZING), like the service creates them."""
    with conn.transaction():
        cj_batch_id = conn.execute(
            "insert into cj_batch_uploads (bos_batch_id, event_correlation_id, language, "
            "course_code, expected_essay_count, status, processing_metadata, assignment_id, "
            "user_id) values (%s, %s, %s, %s, %s, 'PENDING', %s, %s, %s) returning id",
            (
                bos_batch_id,
                str(uuid.uuid4()),
                LANGUAGE,
                COURSE_CODE,
                students,
                Json({"runner": "eng5", "course_id": course_id, "seed": seed}),
                assignment_id,
                RUNNER_USER_ID,
            ),
        ).fetchone()[0]
        conn.execute(
            "insert into cj_batch_states (batch_id, state, total_budget, total_comparisons) "
            "values (%s, 'INITIALIZING', %s, 0)",
            (cj_batch_id, budget),
        )
    return cj_batch_id


def _store_essays(database: Database, cj_batch_id: int, essays: list[GeneratedEssay]):
    """FETCHING_CONTENT, every essay through the repository patch on the service's
    AsyncSession, then PERFORMING_COMPARISONS / GENERATING_PAIRS: one transaction."""
    repository = PostgreSQLCJEssayRepository()

    async def store(provider: DatabaseSessionProvider) -> None:
        async with provider.session() as session, session.begin():
            await _set_status_async(session, cj_batch_id, "FETCHING_CONTENT")
            for essay in essays:
                await repository.create_or_update_cj_processed_essay(
                    session,
                    cj_batch_id,
                    essay.els_essay_id,
                    essay.text_storage_id,
                    essay.text,
                    essay.processing_metadata,
                )
            await _set_status_async(session, cj_batch_id, "PERFORMING_COMPARISONS")
            await session.execute(
                text(
                    "update cj_batch_states set state = 'GENERATING_PAIRS', "
                    "last_activity_at = now() where batch_id = :id"
                ),
                {"id": cj_batch_id},
            )

    run_with_sessions(session_conninfo(database), store)


async def _set_status_async(session: AsyncSession, cj_batch_id: int, status: str) -> None:
    await session.execute(
        text(
            "update cj_batch_uploads set status = cast(:status as cj_batch_status_enum), "
            "updated_at = now() where id = :id"
        ),
        {"status": status, "id": cj_batch_id},
    )


def _submit_pairs(
    conn: psycopg.Connection,
    cj_batch_id: int,
    assignment_id: str,
    essays: list[GeneratedEssay],
    pairs: list[tuple[int, int]],
    seed: int,
) -> list[int]:
    """Insert the pending pairs and move the state to WAITING_CALLBACKS with its counters."""
    pair_ids = []
    with conn.transaction():
        for a, b in pairs:
            essay_a, essay_b = essays[a], essays[b]
            prompt = (
                f"ENG5 assignment {assignment_id}: compare essay A ({essay_a.els_essay_id}) "
                f"with essay B ({essay_b.els_essay_id}). Which is the better piece of writing?"
            )
            pair_ids.append(
                conn.execute(
                    "insert into cj_comparison_pairs (cj_batch_id, essay_a_els_id, "
                    "essay_b_els_id, prompt_text, request_correlation_id, submitted_at, "
                    "processing_metadata, pair_generation_mode) "
                    "values (%s, %s, %s, %s, %s, clock_timestamp(), %s, 'coverage') "
                    "returning id",
                    (
                        cj_batch_id,
                        essay_a.els_essay_id,
                        essay_b.els_essay_id,
                        prompt,
                        uuid.uuid4(),
                        Json({"judge": JUDGE_MODEL, "seed": seed}),
                    ),
                ).fetchone()[0]
            )
        conn.execute(
            "update cj_batch_states set state = 'WAITING_CALLBACKS', total_comparisons = %s, "
            "submitted_comparisons = %s, current_iteration = 1, last_activity_at = now() "
            "where batch_id = %s",
            (len(pairs), len(pairs), cj_batch_id),
        )
    return pair_ids


def _write_callbacks(
    conn: psycopg.Connection,
    cj_batch_id: int,
    essays: list[GeneratedEssay],
    pairs: list[tuple[int, int]],
    pair_ids: list[int],
    judge: MockJudge,
    say: Progress,
) -> None:
    """One transaction per callback, as the service handles them: the pair's verdict (with the
    callback's `provider` and `model` in its metadata), then
    the state's completed counter, last activity and partial-scoring flag."""
    report_every = max(1, len(pairs) // PROGRESS_STEPS)
    for done, ((a, b), pair_id) in enumerate(zip(pairs, pair_ids, strict=True), start=1):
        verdict = judge.compare(essays[a].hidden_quality, essays[b].hidden_quality)
        with conn.transaction():
            conn.execute(
                "update cj_comparison_pairs set winner = %s, confidence = %s, "
                "justification = %s, raw_llm_response = %s, completed_at = clock_timestamp(), "
                "processing_metadata = (coalesce(processing_metadata::jsonb, '{}') || "
                "jsonb_build_object('provider', %s::text, 'model', %s::text))::json "
                "where id = %s",
                (
                    verdict.winner,
                    verdict.confidence,
                    verdict.justification,
                    verdict.raw_response,
                    JUDGE_PROVIDER,
                    JUDGE_MODEL,
                    pair_id,
                ),
            )
            conn.execute(
                "update cj_batch_states set completed_comparisons = completed_comparisons + 1, "
                "last_activity_at = clock_timestamp(), partial_scoring_triggered = "
                "partial_scoring_triggered or (completed_comparisons + 1) * 100 "
                ">= completion_threshold_pct * total_comparisons where batch_id = %s",
                (cj_batch_id,),
            )
        if done % report_every == 0 or done == len(pairs):
            say(f"callbacks: {done}/{len(pairs)} comparisons judged")


def _relay_events(database: Database, cj_batch_id: int, bos_batch_id: str) -> None:
    """Publish the batch's outbox rows as production's relay does: set `published_at`."""
    with connect(database, autocommit=True) as conn:
        conn.execute(
            "update event_outbox set published_at = now()"
            " where published_at is null and aggregate_id in (%s, %s)",
            (bos_batch_id, str(cj_batch_id)),
        )


def _finalize(database: Database, cj_batch_id: int) -> FinalizationResult:
    try:
        return SyncBatchFinalizer(session_conninfo(database)).finalize_scoring(
            cj_batch_id, source="cj-health eng5 execute"
        )
    except BatchNotFoundError as exc:
        raise BatchNotFound(str(exc)) from None
    except FinalizationRefused as exc:
        raise Refused(str(exc)) from None
    except FinalizationError as exc:
        raise CjHealthError(str(exc)) from None
    except psycopg.Error as exc:  # the batch stays in SCORING; a rerun of the finalizer ends it
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CjHealthError(
            f"finalizing CJ batch {cj_batch_id} on {database.display} failed: {first_line}"
        ) from None


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

