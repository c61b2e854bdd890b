"""The patch on a database the project did not create: production's CJ schema at head (built
from the service's own schema, not `cj-health db init`), batches written through the async
repository on an AsyncSession, then `BatchFinalizer.finalize_scoring` through the service's
session provider. Every outbox row must pass its consumer's contract (tests/python/contracts.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import uuid
from dataclasses import dataclass

import pytest
from conftest import load_production_head, table_fingerprint
from contracts import (
    ContractViolation,
    parse_event_data,
    validate_outbox,
    validate_outbox_row,
)
from finalizer_support import call_finalizer, driver_params, run

from cj_health.db import Database, connect
from cj_health.schema import SERVICE_TABLES
from python_fix.events import COMPLETED_TOPIC, RESOURCE_TOPIC, RESULT_TOPIC
from python_fix.grade_scales import ENG5_SCALE, NATIONAL_SCALE, SWEDISH_SCALE, GradeScale
from python_fix.repository import PostgreSQLCJEssayRepository

ESSAY_TEXT = "Essay text that must never leave the essays table"


@dataclass(frozen=True)
class Seeded:
    cj_batch_id: int
    bos_batch_id: str
    students: list[str]
    anchors: list[str]


@pytest.fixture
def prod_db(make_database) -> Database:
    database = make_database()
    load_production_head(database)
    return database


def _seed(
    database: Database,
    *,
    scale: GradeScale | None,
    instruction: str = "assignment",
    assignment_id: str | None = "assignment-1",
    students: int = 6,
    pair_model: tuple[str, str] | None = ("anthropic", "claude-sonnet-4"),
    seed: int = 7,
    driver: str = "asyncpg",
) -> Seeded:
    """One batch in WAITING_CALLBACKS with every comparison judged, as the service leaves it.
    `scale` None: no instruction at all (the default scale); `instruction` "course": the
    scale comes from the course's instruction; anchors only with an assignment."""
    rng = random.Random(seed)
    bos_batch_id = str(uuid.uuid4())
    anchor_grades = list(scale.grades) if scale and assignment_id else []
    with connect(database) as conn, conn.transaction():
        if scale is not None and instruction == "assignment" and assignment_id:
            conn.execute(
                "insert into assessment_instructions (assignment_id, instructions_text, "
                "grade_scale) values (%s, 'write', %s) on conflict do nothing",
                (assignment_id, scale.name),
            )
        if scale is not None and instruction == "course":
            conn.execute(
                "insert into assessment_instructions (course_id, instructions_text, grade_scale) "
                "values ('ENG5', 'write', %s)",
                (scale.name,),
            )
        references = [
            conn.execute(
                "insert into anchor_essay_references (grade, text_storage_id, assignment_id, "
                "grade_scale, anchor_label) values (%s, %s, %s, %s, %s) returning id",
                (grade, f"anchor-{i}-{seed}", assignment_id, scale.name, f"label-{i}-{seed}"),
            ).fetchone()[0]
            for i, grade in enumerate(anchor_grades)
        ]
        cj_batch_id = conn.execute(
            "insert into cj_batch_uploads (bos_batch_id, event_correlation_id, language, "
            "course_code, expected_essay_count, status, assignment_id, user_id, org_id) "
            "values (%s, %s, 'en', 'ENG5', %s, 'PERFORMING_COMPARISONS', %s, 'teacher-1', "
            "'org-1') returning id",
            (bos_batch_id, str(uuid.uuid4()), students + len(references), assignment_id),
        ).fetchone()[0]
        conn.execute(
            "insert into cj_batch_states (batch_id, state, total_comparisons, total_budget, "
            "current_iteration) values (%s, 'WAITING_CALLBACKS', 0, 100, 1)",
            (cj_batch_id,),
        )
    student_ids = [str(uuid.uuid4()) for _ in range(students)]
    anchor_ids = [f"ANCHOR_{ref}_{uuid.uuid4().hex[:8]}" for ref in references]
    essays = [(sid, f"storage-{sid}", {"is_anchor": False}) for sid in student_ids] + [
        (aid, f"anchor-{i}-{seed}", {"is_anchor": True, "anchor_ref_id": str(ref)})
        for i, (aid, ref) in enumerate(zip(anchor_ids, references, strict=True))
    ]
    repository = PostgreSQLCJEssayRepository()

    async def store(provider) -> None:
        async with provider.session() as session, session.begin():
            for essay_id, storage_id, metadata in essays:
                await repository.create_or_update_cj_processed_essay(
                    session, cj_batch_id, essay_id, storage_id, ESSAY_TEXT, metadata
                )

    run(database, store, driver)

    quality = {aid: float(i) for i, aid in enumerate(anchor_ids)}
    quality.update({sid: rng.uniform(0, max(len(anchor_ids), 4)) for sid in student_ids})
    ids = student_ids + anchor_ids
    metadata = json.dumps(
        {"provider": pair_model[0], "model": pair_model[1]} if pair_model else {"judge": "x"}
    )
    with connect(database) as conn, conn.transaction():
        pairs = list(itertools.combinations(ids, 2))
        for a, b in pairs:
            better = quality[a] + rng.gauss(0, 0.7) > quality[b] + rng.gauss(0, 0.7)
            conn.execute(
                "insert into cj_comparison_pairs (cj_batch_id, essay_a_els_id, essay_b_els_id, "
                "prompt_text, winner, confidence, processing_metadata, completed_at) "
                "values (%s, %s, %s, 'compare', %s, 0.8, %s, now())",
                (cj_batch_id, a, b, "essay_a" if better else "essay_b", metadata),
            )
        conn.execute(
            "update cj_batch_states set total_comparisons = %s, submitted_comparisons = %s, "
            "completed_comparisons = %s where batch_id = %s",
            (len(pairs), len(pairs), len(pairs), cj_batch_id),
        )
    return Seeded(cj_batch_id, bos_batch_id, student_ids, anchor_ids)


def _finalize(database: Database, cj_batch_id: int, driver: str = "asyncpg", **kwargs):
    """finalize_scoring_result on a finalizer built as production builds it; its result."""
    return call_finalizer(database, driver, "finalize_scoring_result", cj_batch_id,
                          log_extra={"request": "test"}, **kwargs)  # fmt: skip


def _outbox(database: Database) -> dict[str, dict]:
    with connect(database) as conn:
        assert validate_outbox(conn) == 3
        rows = conn.execute(
            "select topic, event_data, event_data::text from event_outbox"
        ).fetchall()
    for _, _, raw in rows:
        assert ESSAY_TEXT not in raw
    return {topic: parse_event_data(topic, data)[1] for topic, data, _ in rows}


def _bt_scores(database: Database, cj_batch_id: int) -> dict[str, float]:
    with connect(database) as conn:
        return dict(
            conn.execute(
                "select els_essay_id, current_bt_score from cj_processed_essays "
                "where cj_batch_id = %s",
                (cj_batch_id,),
            ).fetchall()
        )


@driver_params
@pytest.mark.parametrize("scale", [ENG5_SCALE, SWEDISH_SCALE], ids=lambda s: s.name)
def test_three_rows_pass_the_contracts_on_production_schema(prod_db, scale, driver):
    batch = _seed(prod_db, scale=scale, driver=driver)
    result = _finalize(prod_db, batch.cj_batch_id, driver)
    assert (result.outcome, result.grade_scale, result.events_written) == (
        "completed",
        scale.name,
        3,
    )
    events = _outbox(prod_db)
    completion, rich, resource = (
        events[topic] for topic in (COMPLETED_TOPIC, RESULT_TOPIC, RESOURCE_TOPIC)
    )

    assert completion.status == "completed_successfully"
    summary = completion.processing_summary
    assert sorted(summary["successful_essay_ids"]) == sorted(batch.students)
    assert summary["failed_essay_ids"] == [] and summary["total_essays"] == len(batch.students)

    # Every essay, anchors included and flagged, ranked 1..n by BT score.
    scores = _bt_scores(prod_db, batch.cj_batch_id)
    results = rich.essay_results
    assert sorted(r.essay_id for r in results) == sorted(batch.students + batch.anchors)
    assert {r.essay_id for r in results if r.is_anchor} == set(batch.anchors)
    assert [r.rank for r in results] == list(range(1, len(results) + 1))
    assert [r.essay_id for r in sorted(results, key=lambda r: r.rank)] == sorted(
        scores, key=lambda e: -scores[e]
    )
    with connect(prod_db) as conn:
        projected = dict(
            conn.execute(
                "select els_essay_id, primary_grade from grade_projections "
                "where cj_batch_id = %s and grade_scale = %s",
                (batch.cj_batch_id, scale.name),
            ).fetchall()
        )
    assert set(projected) == set(batch.students)
    for r in results:
        assert r.letter_grade == (projected[r.essay_id] if not r.is_anchor else "U")
    assert (rich.model_provider, rich.model_used) == ("anthropic", "claude-sonnet-4")
    assert rich.assessment_metadata["anchor_essays_used"] == len(batch.anchors)

    s = len(batch.students)
    assert (resource.resource_type, resource.quantity) == ("cj_comparison", s * (s - 1) // 2)
    assert (resource.user_id, resource.org_id) == ("teacher-1", "org-1")


def test_the_scale_comes_from_the_course_instruction_then_the_default(prod_db, make_database):
    course = _seed(prod_db, scale=ENG5_SCALE, instruction="course", assignment_id=None)
    assert _finalize(prod_db, course.cj_batch_id).grade_scale == ENG5_SCALE.name
    other = make_database()
    load_production_head(other)
    default = _seed(other, scale=None, assignment_id=None)
    assert _finalize(other, default.cj_batch_id).grade_scale == "swedish_8_anchor"


def test_a_guest_batch_finalizes_without_projections_and_three_valid_events(prod_db):
    batch = _seed(prod_db, scale=None, assignment_id=None, pair_model=None)
    result = _finalize(prod_db, batch.cj_batch_id)
    assert (result.outcome, result.projections_written) == ("completed", 0)
    events = _outbox(prod_db)
    rich = events[RESULT_TOPIC]
    assert {r.letter_grade for r in rich.essay_results} == {"U"}
    assert not any(r.is_anchor for r in rich.essay_results)
    # No pair names its model: the settings' defaults.
    assert (rich.model_provider, rich.model_used) == ("openai", "gpt-5.1")
    assert rich.assessment_metadata["calibration_method"] == "default"


@driver_params
def test_the_national_scale_is_refused_before_anything_is_written(prod_db, driver, caplog):
    batch = _seed(prod_db, scale=NATIONAL_SCALE, driver=driver)
    before = table_fingerprint(prod_db, SERVICE_TABLES)
    with caplog.at_level(logging.INFO, logger="python_fix"):
        assert call_finalizer(prod_db, driver, "finalize_scoring", batch.cj_batch_id) is None
    assert table_fingerprint(prod_db, SERVICE_TABLES) == before
    [record] = [r for r in caplog.records if r.name == "python_fix.finalizer"]
    assert record.levelno == logging.ERROR and "eng5_np_national_9_step" in record.getMessage()


def test_the_completion_status_and_source_are_honoured(prod_db, caplog):
    batch = _seed(prod_db, scale=ENG5_SCALE)
    with caplog.at_level(logging.INFO, logger="python_fix.finalizer"):
        result = _finalize(
            prod_db,
            batch.cj_batch_id,
            completion_status="COMPLETE_FORCED_RECOVERY",
            source="batch_monitor_forced_recovery",
        )
    assert result.upload_status == "COMPLETE_FORCED_RECOVERY"
    with connect(prod_db) as conn:
        status = conn.execute(
            "select status::text from cj_batch_uploads where id = %s", (batch.cj_batch_id,)
        ).fetchone()[0]
    assert status == "COMPLETE_FORCED_RECOVERY"
    assert {r.completion_source for r in caplog.records} == {"batch_monitor_forced_recovery"}
    _outbox(prod_db)


def test_transitions_no_ops_and_refusals_are_logged_without_essay_text(prod_db, caplog):
    batch = _seed(prod_db, scale=ENG5_SCALE)
    national = _seed(prod_db, scale=NATIONAL_SCALE, assignment_id="assignment-national")
    with caplog.at_level(logging.INFO, logger="python_fix.finalizer"):
        for cj_batch_id, source in ((batch.cj_batch_id, None),
                                    (batch.cj_batch_id, "batch_monitor_completion_sweep"),
                                    (national.cj_batch_id, "workflow_continuation")):
            assert call_finalizer(prod_db, "asyncpg", "finalize_scoring", cj_batch_id,
                                  log_extra={"request": "test"}, source=source) is None
    records = [r for r in caplog.records if r.name == "python_fix.finalizer"]
    seen = [(r.batch_id, r.from_state, r.to_state, r.completion_source, r.levelname)
            for r in records]
    assert seen == [
        (batch.cj_batch_id, "WAITING_CALLBACKS", "SCORING", "workflow_continuation", "INFO"),
        (batch.cj_batch_id, "SCORING", "COMPLETED", "workflow_continuation", "INFO"),
        (batch.cj_batch_id, "COMPLETED", "COMPLETED", "batch_monitor_completion_sweep", "INFO"),
        (national.cj_batch_id, "WAITING_CALLBACKS", "WAITING_CALLBACKS",
         "workflow_continuation", "ERROR"),
    ]  # fmt: skip
    for record in records:
        uuid.UUID(record.correlation_id)
        assert record.request == "test"  # the caller's log_extra is carried
        assert ESSAY_TEXT not in record.getMessage() and ESSAY_TEXT not in str(record.__dict__)
    assert "eng5_np_national_9_step" in records[-1].getMessage()


def test_the_contracts_reject_what_consumers_reject(prod_db):
    """The contract models can fail: a national grade, a wrong event_type column."""
    batch = _seed(prod_db, scale=ENG5_SCALE)
    _finalize(prod_db, batch.cj_batch_id)
    with connect(prod_db) as conn:
        cursor = conn.execute(
            "select id, aggregate_id, aggregate_type, event_type, event_data, event_key, topic "
            "from event_outbox where topic = %s",
            (RESULT_TOPIC,),
        )
        names = [c.name for c in cursor.description]
        row = dict(zip(names, cursor.fetchone(), strict=True))
    validate_outbox_row(row)
    national = {**row, "event_data": {**row["event_data"]}}
    national["event_data"]["data"] = {
        **row["event_data"]["data"],
        "essay_results": [{**row["event_data"]["data"]["essay_results"][0], "letter_grade": "7"}],
    }
    with pytest.raises(ContractViolation, match="letter_grade"):
        validate_outbox_row(national)
    with pytest.raises(ContractViolation, match="event_type column"):
        validate_outbox_row({**row, "event_type": RESULT_TOPIC})
