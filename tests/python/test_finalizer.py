"""The two-phase finalizer against real PostgreSQL.

Batches are made the way the ENG5 runner makes them (`execute_batch(finalize=False)`): every
callback in, state WAITING_CALLBACKS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from conftest import table_fingerprint
from contracts import validate_outbox
from psycopg.types.json import Json

from cj_health.db import Database, connect
from cj_health.eng5.runner import ExecuteResult, execute_batch
from cj_health.schema import SERVICE_TABLES
from cj_health.service_adapter import SyncBatchFinalizer
from python_fix import scoring
from python_fix.events import (
    COMPLETED_TOPIC,
    RESOURCE_TOPIC,
    RESULT_EVENT_TYPE,
    RESULT_TOPIC,
    BatchFacts,
    build_outbox_rows,
)
from python_fix.finalizer import (
    PHASE1_DONE,
    PHASE2_STEPS,
    BatchNotFoundError,
    FinalizationRefused,
    InjectedFailure,
)
from python_fix.grade_scales import ENG5_SCALE

ENVELOPE_KEYS = {
    "topic",
    "data_schema_uri",
    "event_id",
    "event_type",
    "event_timestamp",
    "source_service",
    "schema_version",
    "correlation_id",
    "data",
    "metadata",
}


@pytest.fixture(autouse=True)
def _outbox_rows_pass_the_contracts(request):
    """Every outbox row a test here leaves behind passes its consumer's contract."""
    database = request.getfixturevalue("cj_db") if "cj_db" in request.fixturenames else None
    yield
    if database is not None:
        with connect(database) as conn:
            validate_outbox(conn)


def _waiting_batch(database: Database, tmp_path: Path, **kwargs) -> ExecuteResult:
    kwargs.setdefault("students", 6)
    kwargs.setdefault("max_comparisons", 60)
    return execute_batch(database, out_dir=tmp_path / uuid.uuid4().hex, finalize=False, **kwargs)


@pytest.fixture
def batch(cj_db: Database, tmp_path: Path) -> ExecuteResult:
    return _waiting_batch(cj_db, tmp_path)


def _one(database: Database, query: str, params: tuple = ()):
    with connect(database) as conn:
        return conn.execute(query, params).fetchone()


def _batch_facts(database: Database, cj_batch_id: int) -> dict:
    row = _one(
        database,
        "select u.status::text, s.state::text, u.completed_at is not null, "
        "(select count(*) from grade_projections where cj_batch_id = u.id), "
        "(select count(*) from event_outbox where aggregate_id in (u.bos_batch_id, u.id::text)), "
        "(select count(*) from cj_processed_essays where cj_batch_id = u.id "
        " and current_bt_score is not null) "
        "from cj_batch_uploads u join cj_batch_states s on s.batch_id = u.id where u.id = %s",
        (cj_batch_id,),
    )
    keys = ("status", "state", "completed_at_set", "projections", "events", "scored_essays")
    return dict(zip(keys, row, strict=True))


def _snapshot(database: Database) -> dict[str, str]:
    """A fingerprint of every row of every CJ table."""
    return table_fingerprint(database, SERVICE_TABLES)


# --- the happy path ------------------------------------------------------------------------


def test_state_goes_to_scoring_first_and_to_completed_after_the_events(cj_db, batch):
    seen: list[tuple[str, str, str]] = []

    def observe(step: str) -> None:
        # What another session (monitoring) sees while phase 2 runs.
        status, state = _one(
            cj_db,
            "select u.status::text, s.state::text from cj_batch_uploads u "
            "join cj_batch_states s on s.batch_id = u.id where u.id = %s",
            (batch.cj_batch_id,),
        )
        seen.append((step, status, state))

    result = SyncBatchFinalizer(cj_db.url, on_step=observe).finalize_scoring(batch.cj_batch_id)

    assert [step for step, _, _ in seen] == [PHASE1_DONE, *PHASE2_STEPS]
    assert PHASE2_STEPS.index("events") < PHASE2_STEPS.index("state")
    # Phase 1 is committed before scoring starts: monitoring sees SCORING throughout phase 2,
    # and none of phase 2 until its single commit.
    assert {(status, state) for _, status, state in seen} == {("PERFORMING_COMPARISONS", "SCORING")}
    assert result.outcome == "completed"
    assert result.transitions == ["WAITING_CALLBACKS->SCORING", "SCORING->COMPLETED"]
    assert (result.scores_written, result.projections_written, result.events_written) == (
        18,
        6,
        3,
    )
    assert _batch_facts(cj_db, batch.cj_batch_id) == {
        "status": "COMPLETE_STABLE",
        "state": "COMPLETED",
        "completed_at_set": True,
        "projections": 6,
        "events": 3,
        "scored_essays": 18,
    }


def test_scores_store_the_bt_fit_and_comparison_counts(cj_db, batch):
    SyncBatchFinalizer(cj_db.url).finalize_scoring(batch.cj_batch_id)
    with connect(cj_db) as conn:
        rows = conn.execute(
            "select e.els_essay_id, e.current_bt_score, e.current_bt_se, e.comparison_count, "
            "(select count(*) from cj_comparison_pairs p where p.winner in ('essay_a','essay_b') "
            " and e.els_essay_id in (p.essay_a_els_id, p.essay_b_els_id)) "
            "from cj_processed_essays e where e.cj_batch_id = %s",
            (batch.cj_batch_id,),
        ).fetchall()
    assert len(rows) == 18
    assert abs(sum(row[1] for row in rows)) < 1e-6  # centred to mean 0
    for _, _, se, count, expected_count in rows:
        assert 0.0 < se <= scoring.SE_CAP
        assert count == expected_count


def test_projections_only_for_students_and_linked_to_the_batch(cj_db, tmp_path):
    first = _waiting_batch(cj_db, tmp_path, students=5)
    second = _waiting_batch(cj_db, tmp_path, students=7)
    for made in (first, second):
        SyncBatchFinalizer(cj_db.url).finalize_scoring(made.cj_batch_id)
    with connect(cj_db) as conn:
        rows = conn.execute(
            "select p.cj_batch_id, e.cj_batch_id, e.is_anchor, p.grade_scale, p.primary_grade, "
            "p.confidence_score, p.confidence_label, p.calculation_metadata "
            "from grade_projections p join cj_processed_essays e using (els_essay_id)"
        ).fetchall()
        anchor_projections = conn.execute(
            "select count(*) from grade_projections p join cj_processed_essays e "
            "using (els_essay_id) where e.is_anchor"
        ).fetchone()[0]
    assert anchor_projections == 0
    per_batch = {first.cj_batch_id: 0, second.cj_batch_id: 0}
    allowed = {ENG5_SCALE.below_lowest_grade, *ENG5_SCALE.grades}
    for batch_id, essay_batch_id, is_anchor, scale, grade, confidence, label, meta in rows:
        assert batch_id == essay_batch_id and not is_anchor
        per_batch[batch_id] += 1
        assert scale == "eng5_np_legacy_9_step" and grade in allowed
        assert 0.0 <= confidence <= 1.0 and label in {"HIGH", "MID", "LOW"}
        assert set(meta) == {"grade_probabilities", "bt_score", "bt_se", "comparison_count"}
        assert abs(sum(meta["grade_probabilities"].values()) - 1.0) < 1e-9
    assert per_batch == {first.cj_batch_id: 5, second.cj_batch_id: 7}


def test_the_events_carry_the_upload_correlation_id(cj_db, batch):
    SyncBatchFinalizer(cj_db.url).finalize_scoring(batch.cj_batch_id)
    with connect(cj_db) as conn:
        bos_batch_id, correlation_id = conn.execute(
            "select bos_batch_id, event_correlation_id from cj_batch_uploads where id = %s",
            (batch.cj_batch_id,),
        ).fetchone()
        events = conn.execute(
            "select aggregate_id, aggregate_type, event_type, topic, event_data, "
            "event_data->>'correlation_id', event_data::text from event_outbox order by topic"
        ).fetchall()
        texts = [
            r[0] for r in conn.execute("select assessment_input_text from cj_processed_essays")
        ]
        projected = {
            r[0]
            for r in conn.execute(
                "select els_essay_id from grade_projections where cj_batch_id = %s",
                (batch.cj_batch_id,),
            )
        }
    assert [(e[0], e[1], e[2], e[3]) for e in events] == [
        (
            str(batch.cj_batch_id),
            "assessment_result",
            RESULT_EVENT_TYPE,
            RESULT_TOPIC,
        ),
        (bos_batch_id, "cj_batch", COMPLETED_TOPIC, COMPLETED_TOPIC),
        (
            bos_batch_id,
            "resource_consumption",
            RESOURCE_TOPIC,
            RESOURCE_TOPIC,
        ),
    ]
    for _, _, _, topic, envelope, wire_correlation_id, raw in events:
        assert wire_correlation_id == str(uuid.UUID(correlation_id)) == correlation_id
        assert set(envelope) == ENVELOPE_KEYS
        assert envelope["event_type"] == envelope["topic"] == topic
        assert not any(text in raw for text in texts)  # no essay text in events
    rich = events[0][4]["data"]
    students = {r["essay_id"]: r for r in rich["essay_results"] if not r["is_anchor"]}
    assert set(students) == projected and len(projected) == 6
    with connect(cj_db) as conn:
        grades = dict(
            conn.execute(
                "select els_essay_id, primary_grade from grade_projections where cj_batch_id = %s",
                (batch.cj_batch_id,),
            ).fetchall()
        )
    assert {essay_id: r["letter_grade"] for essay_id, r in students.items()} == grades


def test_a_rerun_on_a_completed_batch_is_a_no_op(cj_db, batch):
    SyncBatchFinalizer(cj_db.url).finalize_scoring(batch.cj_batch_id)
    before = _snapshot(cj_db)
    again = SyncBatchFinalizer(cj_db.url).finalize_scoring(batch.cj_batch_id)
    assert again.outcome == "already_completed"
    assert again.transitions == []
    assert (again.scores_written, again.projections_written, again.events_written) == (0, 0, 0)
    assert "already COMPLETED" in again.message
    assert _snapshot(cj_db) == before


# --- atomicity ----------------------------------------------------------------------------


@pytest.mark.parametrize("step", PHASE2_STEPS)
def test_a_failure_at_any_phase2_step_leaves_the_batch_scoring_and_a_rerun_finishes(
    cj_db, batch, step
):
    with pytest.raises(InjectedFailure, match=step):
        SyncBatchFinalizer(cj_db.url, fail_at=step).finalize_scoring(batch.cj_batch_id)
    assert _batch_facts(cj_db, batch.cj_batch_id) == {
        "status": "PERFORMING_COMPARISONS",
        "state": "SCORING",
        "completed_at_set": False,
        "projections": 0,
        "events": 0,
        "scored_essays": 0,
    }
    result = SyncBatchFinalizer(cj_db.url).finalize_scoring(batch.cj_batch_id)
    assert result.outcome == "completed"
    assert result.transitions == ["SCORING->COMPLETED"]
    facts = _batch_facts(cj_db, batch.cj_batch_id)
    assert (facts["state"], facts["status"], facts["projections"], facts["events"]) == (
        "COMPLETED",
        "COMPLETE_STABLE",
        6,
        3,
    )


def test_a_real_database_error_in_phase2_rolls_everything_back(cj_db, batch):
    """An unpublished completion event already queued for this BOS batch (the unpatched
    service commits it before the rest) makes the outbox insert fail on production's unique
    index; once it is published, a rerun completes the batch."""
    with connect(cj_db) as conn:
        created_at, correlation_id = conn.execute(
            "select created_at, event_correlation_id from cj_batch_uploads where id = %s",
            (batch.cj_batch_id,),
        ).fetchone()
        facts = BatchFacts(
            batch.cj_batch_id, batch.bos_batch_id, uuid.UUID(correlation_id),
            batch.assignment_id, "ENG5", "eng5-runner", None, created_at,
        )  # fmt: skip
        queued = build_outbox_rows(facts, [], {}, ("mock", "mock-judge-v1"))[0]
        conn.execute(
            "insert into event_outbox (aggregate_id, aggregate_type, event_type, event_data, "
            "topic, event_key) values (%s, %s, %s, %s, %s, %s)",
            (
                queued.aggregate_id,
                queued.aggregate_type,
                queued.event_type,
                Json(queued.event_data),
                queued.topic,
                queued.aggregate_id,
            ),
        )
    with pytest.raises(psycopg.errors.UniqueViolation):
        SyncBatchFinalizer(cj_db.url).finalize_scoring(batch.cj_batch_id)
    facts = _batch_facts(cj_db, batch.cj_batch_id)
    assert (facts["state"], facts["status"], facts["projections"], facts["events"]) == (
        "SCORING",
        "PERFORMING_COMPARISONS",
        0,
        1,
    )
    with connect(cj_db) as conn:
        conn.execute("update event_outbox set published_at = now()")
    assert SyncBatchFinalizer(cj_db.url).finalize_scoring(batch.cj_batch_id).outcome == "completed"
    assert _batch_facts(cj_db, batch.cj_batch_id)["events"] == 4


@pytest.mark.parametrize("step", ["upload_status", "events", "state"])
def test_the_insufficient_essays_path_is_just_as_atomic(cj_db, tmp_path, step):
    made = _waiting_batch(cj_db, tmp_path, students=1)
    with pytest.raises(InjectedFailure):
        SyncBatchFinalizer(cj_db.url, fail_at=step).finalize_scoring(made.cj_batch_id)
    facts = _batch_facts(cj_db, made.cj_batch_id)
    assert (facts["state"], facts["status"], facts["events"]) == (
        "SCORING",
        "PERFORMING_COMPARISONS",
        0,
    )
    result = SyncBatchFinalizer(cj_db.url).finalize_scoring(made.cj_batch_id)
    assert result.outcome == "insufficient_essays"
    assert _batch_facts(cj_db, made.cj_batch_id) == {
        "status": "COMPLETE_INSUFFICIENT_ESSAYS",
        "state": "COMPLETED",
        "completed_at_set": True,
        "projections": 0,
        "events": 3,
        "scored_essays": 0,
    }


def test_fail_at_must_name_a_phase2_step(cj_db):
    with pytest.raises(ValueError, match="fail_at"):
        SyncBatchFinalizer(cj_db.url, fail_at="nonsense")


# --- concurrency --------------------------------------------------------------------------


def _hold_batch_lock_until_waiters(database: Database, cj_batch_id: int, start_waiters) -> None:
    """Lock the upload row, start the finalizers, wait until both queue on the lock, release:
    they then really run together."""
    with connect(database) as holder:
        holder.execute("select 1 from cj_batch_uploads where id = %s for update", (cj_batch_id,))
        start_waiters()
        waiting = 0
        for _ in range(600):  # up to a minute for two Python processes to start
            waiting = _one(
                database,
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and application_name = 'cj-finalizer' and wait_event_type = 'Lock'",
            )[0]
            if waiting == 2:
                break
            time.sleep(0.1)
        assert waiting == 2, "both finalizers should queue on the batch lock"
        holder.rollback()


def _assert_finalized_once(database: Database, made: ExecuteResult, outcomes: list[str]):
    assert sorted(outcomes) == ["already_completed", "completed"]
    facts = _batch_facts(database, made.cj_batch_id)
    assert (facts["state"], facts["projections"], facts["events"]) == ("COMPLETED", 6, 3)


def test_two_threads_finalizing_together_finalize_once(cj_db, batch):
    pool = ThreadPoolExecutor(max_workers=2)
    futures = []

    def start() -> None:
        for _ in range(2):
            finalizer = SyncBatchFinalizer(cj_db.url)
            futures.append(pool.submit(finalizer.finalize_scoring, batch.cj_batch_id))

    try:
        _hold_batch_lock_until_waiters(cj_db, batch.cj_batch_id, start)
        outcomes = [future.result(timeout=120).outcome for future in futures]
    finally:
        pool.shutdown(wait=True)
    _assert_finalized_once(cj_db, batch, outcomes)


CHILD = """
import json, sys
from cj_health.service_adapter import SyncBatchFinalizer
result = SyncBatchFinalizer(sys.argv[1]).finalize_scoring(int(sys.argv[2]))
print(json.dumps({"outcome": result.outcome, "transitions": result.transitions}))
"""


def test_two_processes_finalizing_together_finalize_once(cj_db, batch):
    children: list[subprocess.Popen] = []

    def start() -> None:
        for _ in range(2):
            children.append(
                subprocess.Popen(
                    [sys.executable, "-c", CHILD, cj_db.url, str(batch.cj_batch_id)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )

    try:
        _hold_batch_lock_until_waiters(cj_db, batch.cj_batch_id, start)
        results = []
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    _assert_finalized_once(cj_db, batch, [r["outcome"] for r in results])
    transitions = sorted(t for r in results for t in r["transitions"])
    assert transitions == ["SCORING->COMPLETED", "WAITING_CALLBACKS->SCORING"]


def test_a_finalizer_waits_for_a_running_one_instead_of_duplicating(cj_db, batch):
    """Phase 2 of the first holds the lock; the second queues, then sees COMPLETED."""
    entered = threading.Event()
    release = threading.Event()

    def pause_in_phase2(step: str) -> None:
        if step == "projections":
            entered.set()
            release.wait(timeout=120)

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(
            SyncBatchFinalizer(cj_db.url, on_step=pause_in_phase2).finalize_scoring,
            batch.cj_batch_id,
        )
        assert entered.wait(timeout=120)
        second = pool.submit(SyncBatchFinalizer(cj_db.url).finalize_scoring, batch.cj_batch_id)
        for _ in range(600):
            waiting = _one(
                cj_db,
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and application_name = 'cj-finalizer' and wait_event_type = 'Lock'",
            )[0]
            if waiting == 1:
                break
            time.sleep(0.1)
        release.set()
        outcomes = [first.result(timeout=120).outcome, second.result(timeout=120).outcome]
    assert outcomes == ["completed", "already_completed"]
    _assert_finalized_once(cj_db, batch, outcomes)


def test_phase2_rechecks_the_state_after_another_finalizer_finished(cj_db, batch):
    """The first finalizer pauses between its phases; a second one runs to the end meanwhile.
    The first must then find COMPLETED under its phase-2 lock and write nothing."""
    between_phases = threading.Event()
    release = threading.Event()

    def pause_after_phase1(step: str) -> None:
        if step == PHASE1_DONE:
            between_phases.set()
            release.wait(timeout=120)

    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(
            SyncBatchFinalizer(cj_db.url, on_step=pause_after_phase1).finalize_scoring,
            batch.cj_batch_id,
        )
        assert between_phases.wait(timeout=120)
        try:
            second = SyncBatchFinalizer(cj_db.url).finalize_scoring(batch.cj_batch_id)
        finally:
            release.set()
        first_result = first.result(timeout=120)
    assert second.outcome == "completed" and second.transitions == ["SCORING->COMPLETED"]
    assert first_result.outcome == "already_completed"
    assert first_result.transitions == ["WAITING_CALLBACKS->SCORING"]
    _assert_finalized_once(cj_db, batch, [first_result.outcome, second.outcome])


# --- the guard ----------------------------------------------------------------------------


def test_a_missing_batch_is_a_clear_error(cj_db):
    with pytest.raises(BatchNotFoundError, match="CJ batch 4242 does not exist"):
        SyncBatchFinalizer(cj_db.url).finalize_scoring(4242)


def _set_state(database: Database, cj_batch_id: int, state: str) -> None:
    with connect(database) as conn:
        conn.execute(
            "update cj_batch_states set state = %s where batch_id = %s", (state, cj_batch_id)
        )


@pytest.mark.parametrize("state", ["FAILED", "CANCELLED", "INITIALIZING", "GENERATING_PAIRS"])
def test_batches_in_other_states_are_refused_and_nothing_is_written(cj_db, batch, state):
    _set_state(cj_db, batch.cj_batch_id, state)
    before = _snapshot(cj_db)
    with pytest.raises(FinalizationRefused, match=f"CJ batch {batch.cj_batch_id} is {state}"):
        SyncBatchFinalizer(cj_db.url).finalize_scoring(batch.cj_batch_id)
    assert _snapshot(cj_db) == before


def test_the_batch20_shape_is_refused_and_nothing_is_written(cj_db, batch):
    """Anchors flagged by metadata only while the assignment has registered anchors."""
    with connect(cj_db) as conn:
        conn.execute(
            "update cj_processed_essays set is_anchor = false where cj_batch_id = %s",
            (batch.cj_batch_id,),
        )
    before = _snapshot(cj_db)
    with pytest.raises(FinalizationRefused, match="no anchor essays .* 12 registered anchors"):
        SyncBatchFinalizer(cj_db.url).finalize_scoring(batch.cj_batch_id)
    assert _snapshot(cj_db) == before


def test_a_non_uuid_correlation_id_is_refused(cj_db, batch):
    with connect(cj_db) as conn:
        conn.execute(
            "update cj_batch_uploads set event_correlation_id = 'not-a-uuid' where id = %s",
            (batch.cj_batch_id,),
        )
    before = _snapshot(cj_db)
    with pytest.raises(FinalizationRefused, match="event_correlation_id is not a UUID"):
        SyncBatchFinalizer(cj_db.url).finalize_scoring(batch.cj_batch_id)
    assert _snapshot(cj_db) == before


def test_without_registered_anchors_a_batch_completes_without_projections(cj_db, batch):
    with connect(cj_db) as conn:
        conn.execute(
            "update cj_processed_essays set is_anchor = false where cj_batch_id = %s",
            (batch.cj_batch_id,),
        )
        conn.execute("delete from anchor_essay_references")
    result = SyncBatchFinalizer(cj_db.url).finalize_scoring(batch.cj_batch_id)
    assert result.outcome == "completed" and result.projections_written == 0
    facts = _batch_facts(cj_db, batch.cj_batch_id)
    assert (facts["state"], facts["projections"], facts["events"]) == ("COMPLETED", 0, 3)


# --- scoring ------------------------------------------------------------------------------


def test_bt_ranks_essays_by_their_wins():
    ids = ["low", "mid", "high"]
    outcomes = [("high", "mid")] * 3 + [("mid", "low")] * 3 + [("high", "low")] * 3
    outcomes += [("mid", "high"), ("low", "mid")]
    scores = scoring.fit_bradley_terry(ids, outcomes)
    assert scores["low"].score < scores["mid"].score < scores["high"].score
    assert [scores[i].comparison_count for i in ids] == [7, 8, 7]
    assert all(0 < scores[i].se <= scoring.SE_CAP for i in ids)


def test_an_essay_without_comparisons_gets_the_se_cap():
    scores = scoring.fit_bradley_terry(["a", "b", "c"], [("a", "b"), ("b", "a")])
    assert scores["c"].se == scoring.SE_CAP and scores["c"].comparison_count == 0


def test_calibration_needs_two_distinct_anchor_grades():
    assert scoring.calibrate(ENG5_SCALE, [("B", 0.1), ("B", 0.3)]) is None
    assert scoring.calibrate(ENG5_SCALE, [("B", 0.1), ("A", 0.3)]) is not None


def test_calibration_is_monotone_even_when_anchors_are_not():
    anchors = [(grade, float(i)) for i, grade in enumerate(ENG5_SCALE.grades)]
    anchors[3] = (anchors[3][0], -5.0)  # D- anchor scored far below F+
    calibration = scoring.calibrate(ENG5_SCALE, anchors)
    means = list(calibration.means.values())
    assert means == sorted(means) and len(set(means)) == len(means)
    assert list(calibration.means)[0] == "F"


def test_projection_follows_the_anchor_scale():
    anchors = [(grade, float(i)) for i, grade in enumerate(ENG5_SCALE.grades)]
    calibration = scoring.calibrate(ENG5_SCALE, anchors)
    assert scoring.project(calibration, 8.1, 0.2).primary_grade == "A"
    assert scoring.project(calibration, 4.0, 0.2).primary_grade == "D+"
    assert scoring.project(calibration, -0.1, 0.2).primary_grade == "F+"
    below = scoring.project(calibration, -1.5, 0.2)
    assert below.primary_grade == "F"
    sure = scoring.project(calibration, 4.0, 0.05)
    unsure = scoring.project(calibration, 4.0, 2.0)
    assert sure.confidence_score > unsure.confidence_score
    assert unsure.confidence_label == "LOW"
    assert scoring.confidence_label(0.7) == "HIGH" and scoring.confidence_label(0.4) == "MID"
