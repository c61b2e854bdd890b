"""`BatchFinalizer` as production constructs and calls it, against real PostgreSQL, on both of
the service's drivers (asyncpg and psycopg).

Batches are made the way the ENG5 runner makes them (`execute_batch(finalize=False)`): every
callback in, state WAITING_CALLBACKS; 6 students and 12 anchors.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import table_fingerprint
from contracts import parse_event_data, validate_outbox
from finalizer_support import (
    assert_never_half_finished,
    batch_facts,
    call_finalizer,
    driver_params,
    run,
    waiting_finalizers,
)

from cj_health.db import Database, connect
from cj_health.eng5.runner import ExecuteResult, execute_batch
from cj_health.schema import SERVICE_TABLES
from cj_health.service_adapter import build_finalizer
from python_fix import default_collaborators, scoring
from python_fix.events import FAILED_TOPIC
from python_fix.finalizer import (
    PHASE1_COMMITTED,
    PHASE1_READY,
    PHASE2_COMMITTED,
    PHASE2_STEPS,
    STEPS,
    BatchFinalizer,
    FinalizationRefused,
)
from python_fix.grade_scales import ENG5_SCALE

STUDENTS = 6
ANCHORS = 12
TERMINAL_STATUSES = (
    "COMPLETE_STABLE",
    "COMPLETE_MAX_COMPARISONS",
    "COMPLETE_INSUFFICIENT_ESSAYS",
    "COMPLETE_FORCED_RECOVERY",
    "ERROR_PROCESSING",
    "ERROR_ESSAY_PROCESSING",
)


@pytest.fixture(autouse=True)
def _outbox_rows_pass_the_contracts(request):
    """Every outbox row a test here leaves behind passes its consumer's contract."""
    database = request.getfixturevalue("cj_db") if "cj_db" in request.fixturenames else None
    yield
    if database is not None:
        with connect(database) as conn:
            validate_outbox(conn)


def _waiting_batch(database: Database, tmp_path: Path, **kwargs) -> ExecuteResult:
    kwargs.setdefault("students", STUDENTS)
    kwargs.setdefault("max_comparisons", 60)
    return execute_batch(database, out_dir=tmp_path / uuid.uuid4().hex, finalize=False, **kwargs)


@pytest.fixture
def batch(cj_db: Database, tmp_path: Path) -> ExecuteResult:
    return _waiting_batch(cj_db, tmp_path)


def _one(database: Database, query: str, params: tuple = ()):
    with connect(database) as conn:
        return conn.execute(query, params).fetchone()


def _an_anchor(conn, cj_batch_id: int) -> str:
    return conn.execute(
        "select els_essay_id from cj_processed_essays where cj_batch_id = %s and is_anchor "
        "order by els_essay_id limit 1", (cj_batch_id,),
    ).fetchone()[0]  # fmt: skip


def _snapshot(database: Database) -> dict[str, str]:
    return table_fingerprint(database, SERVICE_TABLES)


def _finalizer_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "python_fix.finalizer"]


COMPLETE = {
    "status": "COMPLETE_STABLE",
    "state": "COMPLETED",
    "completed_at_set": True,
    "projections": STUDENTS,
    "events": 3,
    "scored_essays": STUDENTS + ANCHORS,
}


# --- production's interface ----------------------------------------------------------------

PRODUCTION_CONSTRUCTOR = [
    "session_provider", "batch_repository", "comparison_repository", "essay_repository",
    "event_publisher", "content_client", "settings", "grade_projector",
]  # fmt: skip
_BATCH = [("batch_id", "POSITIONAL_OR_KEYWORD", None),
          ("correlation_id", "POSITIONAL_OR_KEYWORD", None),
          ("log_extra", "POSITIONAL_OR_KEYWORD", None)]
PRODUCTION_METHODS = {
    "finalize_scoring": [*_BATCH, ("completion_status", "KEYWORD_ONLY", "None"),
                         ("source", "KEYWORD_ONLY", "None")],
    "finalize_failure": [*_BATCH, ("failure_reason", "KEYWORD_ONLY", None),
                         ("failure_details", "KEYWORD_ONLY", "None")],
    "finalize_single_essay": _BATCH,
}  # fmt: skip


def _parameters(function) -> list[tuple]:
    described = []
    for name, parameter in inspect.signature(function).parameters.items():
        if name == "self":
            continue
        default = None if parameter.default is inspect.Parameter.empty else repr(parameter.default)
        described.append((name, parameter.kind.name, default))
    return described


@pytest.mark.unit
def test_constructor_and_methods_are_productions():
    constructor = _parameters(BatchFinalizer.__init__)
    assert constructor == [(name, "POSITIONAL_OR_KEYWORD", None) for name in PRODUCTION_CONSTRUCTOR]
    for method, expected in PRODUCTION_METHODS.items():
        assert inspect.iscoroutinefunction(getattr(BatchFinalizer, method)), method
        assert _parameters(getattr(BatchFinalizer, method)) == expected, method


@pytest.mark.unit
def test_production_constructs_it_with_eight_keywords():
    class Provider:
        def session(self):
            raise AssertionError("construction opens no session")

    provider = Provider()
    collaborators = default_collaborators(provider)
    assert set(collaborators) == set(PRODUCTION_CONSTRUCTOR) - {"session_provider"}
    finalizer = BatchFinalizer(session_provider=provider, **collaborators)
    for name in PRODUCTION_CONSTRUCTOR:
        assert getattr(finalizer, name) is (provider if name == "session_provider"
                                            else collaborators[name])  # fmt: skip


# --- end to end ----------------------------------------------------------------------------


@driver_params
def test_finalize_scoring_completes_the_batch_and_returns_none(cj_db, batch, driver, caplog):
    correlation_id = uuid.uuid4()
    with caplog.at_level(logging.INFO, logger="python_fix"):
        returned = call_finalizer(
            cj_db, driver, "finalize_scoring", batch.cj_batch_id,
            correlation_id=correlation_id, log_extra={"request": "r-1"},
        )  # fmt: skip
    assert returned is None
    assert batch_facts(cj_db, batch.cj_batch_id) == COMPLETE
    with connect(cj_db) as conn:
        students = {
            row[0]
            for row in conn.execute(
                "select els_essay_id from cj_processed_essays where cj_batch_id = %s "
                "and not is_anchor",
                (batch.cj_batch_id,),
            )
        }
        projected = dict(
            conn.execute(
                "select els_essay_id, primary_grade from grade_projections where cj_batch_id = %s",
                (batch.cj_batch_id,),
            ).fetchall()
        )
        rows = conn.execute("select topic, event_data from event_outbox").fetchall()
    assert set(projected) == students
    events = {topic: parse_event_data(topic, data)[1] for topic, data in rows}
    rich = events["huleedu.assessment.result.published.v1"]
    assert {r.essay_id: r.letter_grade for r in rich.essay_results if not r.is_anchor} == projected
    records = _finalizer_records(caplog)
    assert [(r.from_state, r.to_state) for r in records] == [
        ("WAITING_CALLBACKS", "SCORING"), ("SCORING", "COMPLETED")]
    for record in records:
        assert (record.batch_id, record.completion_source) == (
            batch.cj_batch_id, "workflow_continuation")
        assert record.correlation_id == str(correlation_id) and record.request == "r-1"


@driver_params
def test_scores_store_the_bt_fit_and_comparison_counts(cj_db, batch, driver):
    call_finalizer(cj_db, driver, "finalize_scoring", batch.cj_batch_id)
    with connect(cj_db) as conn:
        rows = conn.execute(
            "select e.current_bt_score, e.current_bt_se, e.comparison_count, "
            "(select count(*) from cj_comparison_pairs p where p.winner in ('essay_a','essay_b') "
            " and e.els_essay_id in (p.essay_a_els_id, p.essay_b_els_id)) "
            "from cj_processed_essays e where e.cj_batch_id = %s",
            (batch.cj_batch_id,),
        ).fetchall()
    assert len(rows) == STUDENTS + ANCHORS
    assert abs(sum(row[0] for row in rows)) < 1e-6  # centred to mean 0
    for _, se, count, expected_count in rows:
        assert 0.0 < se <= 2.0 and count == expected_count


@driver_params
def test_the_steps_come_in_the_documented_order(cj_db, batch, driver):
    """Another session (the monitoring) sees SCORING from phase 1's commit on, and none of
    phase 2 but the projector's own commit until phase 2 commits."""
    seen = []

    def observe(step: str) -> None:
        facts = batch_facts(cj_db, batch.cj_batch_id)
        seen.append((step, facts["state"], facts["status"], facts["projections"],
                     facts["events"], facts["scored_essays"]))  # fmt: skip

    call_finalizer(cj_db, driver, "finalize_scoring", batch.cj_batch_id, step_hook=observe)
    waiting = ("WAITING_CALLBACKS", "PERFORMING_COMPARISONS", 0, 0, 0)
    scoring = ("SCORING", "PERFORMING_COMPARISONS", 0, 0, 0)
    projected = ("SCORING", "PERFORMING_COMPARISONS", STUDENTS, 0, 0)
    assert seen == [
        (PHASE1_READY, *waiting), (PHASE1_COMMITTED, *scoring), ("scores", *scoring),
        ("projections", *projected), ("upload_status", *projected), ("events", *projected),
        ("state", *projected),
        (PHASE2_COMMITTED, "COMPLETED", "COMPLETE_STABLE", STUDENTS, 3, STUDENTS + ANCHORS),
    ]  # fmt: skip
    assert [step for step, *_ in seen] == list(STEPS)


METADATA_KEYS = {
    "bt_mean", "bt_se", "grade_probabilities", "grade_centers", "grade_boundaries",
    "context_source", "calibration_method", "primary_anchor_grade", "grade_scale",
}  # fmt: skip


@driver_params
def test_the_default_projector_stores_productions_rows(cj_db, tmp_path, driver):
    """One row per student of each batch (never an anchor), with production's columns and
    metadata, and the grades production's maths give for the stored BT scores."""
    first = _waiting_batch(cj_db, tmp_path, students=5)
    second = _waiting_batch(cj_db, tmp_path, students=7)
    for made in (first, second):
        call_finalizer(cj_db, driver, "finalize_scoring", made.cj_batch_id)
    with connect(cj_db) as conn:
        rows = conn.execute(
            "select p.cj_batch_id, e.cj_batch_id, e.is_anchor, e.current_bt_score, "
            "e.current_bt_se, p.grade_scale, p.primary_grade, p.confidence_score, "
            "p.confidence_label, p.population_prior, p.normalized_score, p.assessment_method, "
            "p.calculation_metadata from grade_projections p join cj_processed_essays e "
            "using (els_essay_id)"
        ).fetchall()
        anchors = conn.execute(
            "select e.cj_batch_id, r.grade, e.current_bt_score from cj_processed_essays e "
            "join anchor_essay_references r "
            "on r.id = (e.processing_metadata->>'anchor_ref_id')::int where e.is_anchor"
        ).fetchall()
    per_batch = {first.cj_batch_id: 0, second.cj_batch_id: 0}
    for (batch_id, essay_batch_id, is_anchor, score, se, scale, grade, confidence, label,
         prior, normalized, method, meta) in rows:  # fmt: skip
        assert batch_id == essay_batch_id and not is_anchor
        per_batch[batch_id] += 1
        assert (scale, normalized, method) == ("eng5_np_legacy_9_step", None, "cj_assessment")
        assert set(meta) == METADATA_KEYS and meta["calibration_method"] == "gaussian_mixture"
        assert (meta["bt_mean"], meta["bt_se"], meta["context_source"]) == (
            score, se, "assignment")
        calibration = scoring.calibrate(
            ENG5_SCALE, [(g, s) for b, g, s in anchors if b == batch_id]
        )
        expected = scoring.project(calibration, score, se)
        assert (grade, confidence, label, prior) == (
            expected.primary_grade, pytest.approx(expected.confidence_score),
            expected.confidence_label, expected.population_prior)  # fmt: skip
        assert meta["primary_anchor_grade"] == expected.primary_anchor_grade
        assert meta["grade_probabilities"] == pytest.approx(expected.probabilities)
    assert per_batch == {first.cj_batch_id: 5, second.cj_batch_id: 7}


# --- a crash or a failure at every step ------------------------------------------------------


@driver_params
@pytest.mark.parametrize("step", PHASE2_STEPS)
def test_a_failure_in_phase2_returns_none_logs_and_a_rerun_finishes(
    cj_db, batch, driver, step, caplog
):
    def fail(reached: str) -> None:
        if reached == step:
            raise RuntimeError(f"injected failure at {reached}")

    with caplog.at_level(logging.INFO, logger="python_fix"):
        assert call_finalizer(cj_db, driver, "finalize_scoring", batch.cj_batch_id,
                              step_hook=fail) is None  # fmt: skip
    errors = [r for r in _finalizer_records(caplog) if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"injected failure at {step}" in errors[0].getMessage()
    assert errors[0].to_state == "SCORING" and errors[0].outcome == "rolled_back"
    projected = STUDENTS if PHASE2_STEPS.index(step) >= PHASE2_STEPS.index("projections") else 0
    assert batch_facts(cj_db, batch.cj_batch_id) == {
        "status": "PERFORMING_COMPARISONS", "state": "SCORING", "completed_at_set": False,
        "projections": projected, "events": 0, "scored_essays": 0,
    }  # fmt: skip
    call_finalizer(cj_db, driver, "finalize_scoring", batch.cj_batch_id)
    assert batch_facts(cj_db, batch.cj_batch_id) == COMPLETE


KILL_CHILD = """
import os, signal, sys, uuid
from cj_health.service_adapter import build_finalizer, run_with_sessions
url, driver, batch_id, kill_at = sys.argv[1:]

def kill(step):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

async def work(provider):
    finalizer = build_finalizer(provider)
    finalizer.step_hook = kill
    await finalizer.finalize_scoring(int(batch_id), uuid.uuid4(), {})

run_with_sessions(url, work, driver=driver)
sys.exit(3)  # never killed: the step was not reached
"""
# (state, projections, scored essays) right after the kill; status PERFORMING_COMPARISONS
# and no events until phase 2 commits.
AFTER_KILL = {
    PHASE1_READY: ("WAITING_CALLBACKS", 0, 0),
    PHASE1_COMMITTED: ("SCORING", 0, 0),
    "projections": ("SCORING", STUDENTS, 0),
    "state": ("SCORING", STUDENTS, 0),
}


@driver_params
@pytest.mark.parametrize("kill_at", [*AFTER_KILL, PHASE2_COMMITTED])
def test_kill_9_at_each_commit_point_and_a_rerun_gives_one_result(
    cj_db, batch, driver, kill_at
):
    """The process dies at the step (SIGKILL: no cleanup, the server rolls back what was not
    committed). No kill leaves a finished-looking batch without its projections and events;
    a rerun completes it with one set of projections and three events."""
    child = subprocess.run(
        [sys.executable, "-c", KILL_CHILD, cj_db.url, driver, str(batch.cj_batch_id), kill_at],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr
    facts = batch_facts(cj_db, batch.cj_batch_id)
    assert_never_half_finished(facts, STUDENTS)
    if kill_at == PHASE2_COMMITTED:
        assert facts == COMPLETE
    else:
        state, projections, scored = AFTER_KILL[kill_at]
        assert facts == {
            "status": "PERFORMING_COMPARISONS", "state": state, "completed_at_set": False,
            "projections": projections, "events": 0, "scored_essays": scored,
        }  # fmt: skip

    result = call_finalizer(cj_db, driver, "finalize_scoring_result", batch.cj_batch_id)
    assert batch_facts(cj_db, batch.cj_batch_id) == COMPLETE
    if kill_at == PHASE2_COMMITTED:
        assert result.outcome == "already_final"
    else:
        assert result.outcome == "completed"
        assert result.projections_reused is (AFTER_KILL[kill_at][1] > 0)


# --- concurrency ---------------------------------------------------------------------------


def _hold_batch_lock_until_waiting(database: Database, cj_batch_id: int, start, waiters: int):
    """Lock the upload row, start the finalizers, wait until all of them queue on the lock,
    release: they then really run together."""
    with connect(database) as holder:
        holder.execute("select 1 from cj_batch_uploads where id = %s for update", (cj_batch_id,))
        start()
        waiting = 0
        for _ in range(900):  # up to 90 s for the callers to start
            waiting = waiting_finalizers(database)
            if waiting == waiters:
                break
            time.sleep(0.1)
        assert waiting == waiters, f"{waiting} of {waiters} finalizers queued on the batch lock"
        holder.rollback()


@driver_params
def test_eight_concurrent_callers_finalize_once(cj_db, batch, driver, caplog):
    """Eight finalize_scoring calls at once on one finalizer (as the service shares one)."""

    async def eight(provider) -> list:
        finalizer = build_finalizer(provider)
        return await asyncio.gather(*(
            finalizer.finalize_scoring(batch.cj_batch_id, uuid.uuid4(), {"caller": n})
            for n in range(8)
        ))  # fmt: skip

    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(run(cj_db, eight, driver)))
    with caplog.at_level(logging.INFO, logger="python_fix"):
        _hold_batch_lock_until_waiting(cj_db, batch.cj_batch_id, thread.start, 8)
        thread.join(timeout=180)
    assert outcome == [[None] * 8]
    assert batch_facts(cj_db, batch.cj_batch_id) == COMPLETE
    records = _finalizer_records(caplog)
    assert not [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    transitions = sorted((r.from_state, r.to_state) for r in records if r.from_state != r.to_state)
    assert transitions == [("SCORING", "COMPLETED"), ("WAITING_CALLBACKS", "SCORING")]
    assert sum(r.outcome == "no_op" for r in records if hasattr(r, "outcome")) == 7


PROCESS_CHILD = """
import sys, uuid
from cj_health.service_adapter import build_finalizer, run_with_sessions
url, driver, batch_id = sys.argv[1:]

async def work(provider):
    return await build_finalizer(provider).finalize_scoring(int(batch_id), uuid.uuid4(), {})

assert run_with_sessions(url, work, driver=driver) is None
"""


@driver_params
def test_two_processes_finalizing_together_finalize_once(cj_db, batch, driver):
    children: list[subprocess.Popen] = []

    def start() -> None:
        for _ in range(2):
            children.append(subprocess.Popen(
                [sys.executable, "-c", PROCESS_CHILD, cj_db.url, driver, str(batch.cj_batch_id)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))  # fmt: skip

    try:
        _hold_batch_lock_until_waiting(cj_db, batch.cj_batch_id, start, 2)
        for child in children:
            _, err = child.communicate(timeout=180)
            assert child.returncode == 0, err
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert batch_facts(cj_db, batch.cj_batch_id) == COMPLETE


@driver_params
def test_a_finalizer_waits_for_a_running_one_instead_of_duplicating(cj_db, batch, driver):
    """The first pauses in phase 2 after its projector committed, holding its locks; the
    second queues, then finds the batch COMPLETED."""
    entered, release = threading.Event(), threading.Event()

    def pause_after_projections(step: str) -> None:
        if step == "projections":
            entered.set()
            release.wait(timeout=120)

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(call_finalizer, cj_db, driver, "finalize_scoring_result",
                            batch.cj_batch_id, step_hook=pause_after_projections)  # fmt: skip
        assert entered.wait(timeout=120)
        second = pool.submit(call_finalizer, cj_db, driver, "finalize_scoring_result",
                             batch.cj_batch_id)  # fmt: skip
        for _ in range(600):
            if waiting_finalizers(cj_db) == 1:
                break
            time.sleep(0.1)
        release.set()
        outcomes = [first.result(timeout=120).outcome, second.result(timeout=120).outcome]
    assert outcomes == ["completed", "already_final"]
    assert batch_facts(cj_db, batch.cj_batch_id) == COMPLETE


@driver_params
def test_phase2_rechecks_the_state_after_another_finalizer_finished(cj_db, batch, driver):
    between, release = threading.Event(), threading.Event()

    def pause_after_phase1(step: str) -> None:
        if step == PHASE1_COMMITTED:
            between.set()
            release.wait(timeout=120)

    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(call_finalizer, cj_db, driver, "finalize_scoring_result",
                            batch.cj_batch_id, step_hook=pause_after_phase1)  # fmt: skip
        assert between.wait(timeout=120)
        try:
            second = call_finalizer(cj_db, driver, "finalize_scoring_result", batch.cj_batch_id)
        finally:
            release.set()
        first_result = first.result(timeout=120)
    assert second.outcome == "completed" and second.transitions == ["SCORING->COMPLETED"]
    assert first_result.outcome == "already_final"
    assert first_result.transitions == ["WAITING_CALLBACKS->SCORING"]
    assert batch_facts(cj_db, batch.cj_batch_id) == COMPLETE


def test_the_projectors_session_is_not_blocked_by_the_finalizers_locks(cj_db, batch):
    """While phase 2 holds its locks, a session inserting a projection row for the batch (its
    foreign keys take FOR KEY SHARE on the upload and essay rows) does not wait."""
    checked: list[float] = []

    def insert_beside(step: str) -> None:
        if step != "scores":
            return
        with connect(cj_db) as other:
            other.execute("set lock_timeout = '2s'")
            essay = _an_anchor(other, batch.cj_batch_id)
            other.execute(
                "insert into grade_projections (els_essay_id, cj_batch_id, primary_grade, "
                "confidence_score, confidence_label, calculation_metadata) "
                "values (%s, %s, 'B', 0.5, 'MID', '{}')", (essay, batch.cj_batch_id),
            )  # fmt: skip
            other.rollback()
            checked.append(1.0)

    call_finalizer(cj_db, "psycopg", "finalize_scoring", batch.cj_batch_id,
                   step_hook=insert_beside)  # fmt: skip
    assert checked == [1.0]
    assert batch_facts(cj_db, batch.cj_batch_id) == COMPLETE


# --- the guard: nothing written, None returned, the reason logged ----------------------------


def _set(database: Database, cj_batch_id: int, status: str | None, state: str | None) -> None:
    with connect(database) as conn:
        if status:
            conn.execute("update cj_batch_uploads set status = %s where id = %s",
                         (status, cj_batch_id))  # fmt: skip
        if state:
            conn.execute("update cj_batch_states set state = %s where batch_id = %s",
                         (state, cj_batch_id))  # fmt: skip


@driver_params
@pytest.mark.parametrize("method", ["finalize_scoring", "finalize_failure",
                                    "finalize_single_essay"])  # fmt: skip
def test_a_terminal_upload_status_is_left_alone(cj_db, batch, driver, method, caplog):
    """Production's guard: COMPLETE_* and ERROR_* are terminal whatever the state; with the
    state still WAITING_CALLBACKS or SCORING (a wedged batch) it is an ERROR."""
    kwargs = {"failure_reason": "low_success_rate"} if method == "finalize_failure" else {}
    for status in TERMINAL_STATUSES:
        for state in ("WAITING_CALLBACKS", "SCORING", "COMPLETED"):
            _set(cj_db, batch.cj_batch_id, status, state)
            before = _snapshot(cj_db)
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="python_fix"):
                assert call_finalizer(cj_db, driver, method, batch.cj_batch_id, **kwargs) is None
            assert _snapshot(cj_db) == before, (status, state)
            [record] = _finalizer_records(caplog)
            if state == "COMPLETED":
                assert record.levelno == logging.INFO and record.outcome == "no_op"
            else:
                assert record.levelno == logging.ERROR and record.outcome == "refused"
                assert f"terminal upload status {status} while its state is {state}" in (
                    record.getMessage())


@driver_params
def test_other_states_are_refused_and_nothing_is_written(cj_db, batch, driver, caplog):
    for state in ("FAILED", "CANCELLED", "INITIALIZING", "GENERATING_PAIRS"):
        _set(cj_db, batch.cj_batch_id, None, state)
        before = _snapshot(cj_db)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="python_fix"):
            assert call_finalizer(cj_db, driver, "finalize_scoring", batch.cj_batch_id) is None
        assert _snapshot(cj_db) == before
        [record] = _finalizer_records(caplog)
        assert record.levelno == logging.ERROR, state
        assert f"CJ batch {batch.cj_batch_id} is {state}" in record.getMessage()


@driver_params
def test_the_batch20_shape_is_refused_and_nothing_is_written(cj_db, batch, driver, caplog):
    """Anchors flagged by metadata only while the assignment has registered anchors."""
    with connect(cj_db) as conn:
        conn.execute("update cj_processed_essays set is_anchor = false where cj_batch_id = %s",
                     (batch.cj_batch_id,))  # fmt: skip
    before = _snapshot(cj_db)
    with caplog.at_level(logging.INFO, logger="python_fix"):
        assert call_finalizer(cj_db, driver, "finalize_scoring", batch.cj_batch_id) is None
    assert _snapshot(cj_db) == before
    [record] = _finalizer_records(caplog)
    assert record.levelno == logging.ERROR and record.batch_id == batch.cj_batch_id
    assert "no anchor essays (is_anchor) but its assignment has 12 registered anchors" in (
        record.getMessage())


def test_a_refusal_names_the_main_cause_first_and_the_side_conditions_after(cj_db, batch, caplog):
    """The Batch 20 shape without a user_id: the lost anchor flags stop the grades, the
    missing user_id only the resource event, so the anchors come first."""
    with connect(cj_db) as conn:
        conn.execute("update cj_processed_essays set is_anchor = false where cj_batch_id = %s",
                     (batch.cj_batch_id,))  # fmt: skip
        conn.execute("update cj_batch_uploads set user_id = null where id = %s",
                     (batch.cj_batch_id,))  # fmt: skip
    before = _snapshot(cj_db)
    with caplog.at_level(logging.INFO, logger="python_fix"):
        assert call_finalizer(cj_db, "asyncpg", "finalize_scoring", batch.cj_batch_id) is None
    assert _snapshot(cj_db) == before
    [record] = _finalizer_records(caplog)
    message = record.getMessage()
    assert message.index("no anchor essays (is_anchor)") < message.index("(also: no user_id")


@driver_params
def test_a_missing_batch_returns_none_and_writes_nothing(cj_db, batch, driver, caplog):
    before = _snapshot(cj_db)
    with caplog.at_level(logging.INFO, logger="python_fix"):
        for method, kwargs in (("finalize_scoring", {}), ("finalize_single_essay", {}),
                               ("finalize_failure", {"failure_reason": "x"})):  # fmt: skip
            assert call_finalizer(cj_db, driver, method, 4242, **kwargs) is None
    assert _snapshot(cj_db) == before
    records = _finalizer_records(caplog)
    assert [(r.levelno, r.getMessage(), r.batch_id) for r in records] == [
        (logging.ERROR, "CJ batch 4242 does not exist", 4242)] * 3


@driver_params
def test_an_anchor_without_a_grade_is_refused(cj_db, batch, driver, caplog):
    with connect(cj_db) as conn:
        anchor = _an_anchor(conn, batch.cj_batch_id)
        conn.execute(
            "update cj_processed_essays set processing_metadata = '{\"is_anchor\": true}', "
            "text_storage_id = 'unknown' where els_essay_id = %s", (anchor,),
        )  # fmt: skip
    before = _snapshot(cj_db)
    with caplog.at_level(logging.INFO, logger="python_fix"):
        assert call_finalizer(cj_db, driver, "finalize_scoring", batch.cj_batch_id) is None
    assert _snapshot(cj_db) == before
    [record] = _finalizer_records(caplog)
    assert record.levelno == logging.ERROR
    assert f"anchor {anchor} has no readable grade" in record.getMessage()


def test_a_non_uuid_correlation_id_and_a_missing_user_are_refused(cj_db, batch):
    for column, value, reason in (("event_correlation_id", "not-a-uuid", "is not a UUID"),
                                  ("user_id", None, "no user_id; the resource")):  # fmt: skip
        with connect(cj_db) as conn:
            original = conn.execute(f"select {column} from cj_batch_uploads where id = %s",
                                    (batch.cj_batch_id,)).fetchone()[0]  # fmt: skip
            conn.execute(f"update cj_batch_uploads set {column} = %s where id = %s",
                         (value, batch.cj_batch_id))  # fmt: skip
        before = _snapshot(cj_db)
        result = None
        with pytest.raises(FinalizationRefused, match=reason):
            result = call_finalizer(cj_db, "asyncpg", "finalize_scoring_result",
                                    batch.cj_batch_id)  # fmt: skip
        assert result is None and _snapshot(cj_db) == before
        with connect(cj_db) as conn:
            conn.execute(f"update cj_batch_uploads set {column} = %s where id = %s",
                         (original, batch.cj_batch_id))  # fmt: skip


@driver_params
def test_without_registered_anchors_a_batch_completes_without_projections(cj_db, batch, driver):
    with connect(cj_db) as conn:
        conn.execute("update cj_processed_essays set is_anchor = false where cj_batch_id = %s",
                     (batch.cj_batch_id,))  # fmt: skip
        conn.execute("delete from anchor_essay_references")
    result = call_finalizer(cj_db, driver, "finalize_scoring_result", batch.cj_batch_id)
    assert result.outcome == "completed" and result.projections_written == 0
    facts = batch_facts(cj_db, batch.cj_batch_id)
    assert (facts["state"], facts["projections"], facts["events"]) == ("COMPLETED", 0, 3)


# --- finalize_failure and finalize_single_essay ----------------------------------------------


@driver_params
@pytest.mark.parametrize("state", ["WAITING_CALLBACKS", "SCORING"])
def test_finalize_failure_fails_the_batch_with_one_failure_event(cj_db, batch, driver, state):
    _set(cj_db, batch.cj_batch_id, None, state)
    correlation_id = uuid.uuid4()
    details = {"success_rate": 0.4, "threshold": 0.8}
    returned = call_finalizer(cj_db, driver, "finalize_failure", batch.cj_batch_id,
                              correlation_id=correlation_id, failure_reason="low_success_rate",
                              failure_details=details)  # fmt: skip
    assert returned is None
    with connect(cj_db) as conn:
        status, batch_state, completed_at, metadata = conn.execute(
            "select u.status::text, s.state::text, u.completed_at, u.processing_metadata "
            "from cj_batch_uploads u join cj_batch_states s on s.batch_id = u.id where u.id = %s",
            (batch.cj_batch_id,),
        ).fetchone()
        rows = conn.execute(
            "select topic, event_type, aggregate_type, aggregate_id, event_data "
            "from event_outbox").fetchall()  # fmt: skip
        projections = conn.execute("select count(*) from grade_projections").fetchone()[0]
    assert (status, batch_state, projections) == ("ERROR_PROCESSING", "FAILED", 0)
    assert completed_at is not None
    failed = metadata["failed_reason"]
    assert (failed["reason"], failed["details"]) == ("low_success_rate", details)
    assert metadata["runner"] == "eng5"  # the upload's other metadata stays
    [(topic, event_type, aggregate_type, aggregate_id, data)] = rows
    assert (topic, event_type, aggregate_type, aggregate_id) == (
        FAILED_TOPIC, FAILED_TOPIC, "cj_batch", batch.bos_batch_id)
    envelope, event = parse_event_data(topic, data)
    assert envelope.correlation_id == correlation_id
    assert (event.status, event.system_metadata.processing_stage) == (
        "failed_critically", "failed")
    assert event.system_metadata.error_info == {"reason": "low_success_rate", "details": details}
    before = _snapshot(cj_db)
    call_finalizer(cj_db, driver, "finalize_failure", batch.cj_batch_id, failure_reason="again")
    assert _snapshot(cj_db) == before


@driver_params
def test_finalize_single_essay_completes_a_lone_student(cj_db, tmp_path, driver):
    made = _waiting_batch(cj_db, tmp_path, students=1, max_comparisons=10)
    _set(cj_db, made.cj_batch_id, None, "GENERATING_PAIRS")
    assert call_finalizer(cj_db, driver, "finalize_single_essay", made.cj_batch_id) is None
    facts = batch_facts(cj_db, made.cj_batch_id)
    assert facts == {
        "status": "COMPLETE_INSUFFICIENT_ESSAYS", "state": "COMPLETED", "completed_at_set": True,
        "projections": 0, "events": 3, "scored_essays": 1,
    }  # fmt: skip
    with connect(cj_db) as conn:
        scores = conn.execute(
            "select is_anchor, current_bt_score from cj_processed_essays where cj_batch_id = %s",
            (made.cj_batch_id,),
        ).fetchall()
        rows = conn.execute("select topic, event_data from event_outbox").fetchall()
    assert [score for anchor, score in scores if not anchor] == [0.0]
    assert all(score is None for anchor, score in scores if anchor)
    events = {topic: parse_event_data(topic, data)[1] for topic, data in rows}
    completion = events["huleedu.cj_assessment.completed.v1"]
    assert completion.status == "completed_successfully"
    assert completion.processing_summary["single_essay_batch"] is True
    assert events["huleedu.resource.consumption.v1"].quantity == 0


# --- the relay wake-up -----------------------------------------------------------------------


@driver_params
def test_the_relay_is_woken_after_the_commit(cj_db, batch, driver):
    """A relay blocked on its wake key (its own namespace here) wakes once finalization has
    committed and finds all three rows visible."""
    import redis
    import redis.asyncio

    service = f"cj-health-test-{uuid.uuid4().hex}"
    key = f"outbox:wake:{service}"
    seen: list[int] = []

    def relay() -> None:
        client = redis.Redis(host="127.0.0.1", port=6379)
        try:
            if client.blpop([key], timeout=120) is not None:
                seen.append(batch_facts(cj_db, batch.cj_batch_id)["events"])
        finally:
            client.delete(key)
            client.close()

    from python_fix.collaborators import Settings

    listener = threading.Thread(target=relay)
    listener.start()

    async def finalize(provider) -> None:
        client = redis.asyncio.Redis(host="127.0.0.1", port=6379)
        try:
            finalizer = build_finalizer(provider, redis_client=client,
                                        settings=Settings(SERVICE_NAME=service))  # fmt: skip
            await finalizer.finalize_scoring(batch.cj_batch_id, uuid.uuid4(), {})
        finally:
            await client.aclose()

    run(cj_db, finalize, driver)
    listener.join(timeout=130)
    assert seen == [3]

