"""The ENG5 runner against real PostgreSQL: reset and its guard,
register-anchors, execute end to end with the mock judge, and the CLI."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from conftest import table_fingerprint
from contracts import validate_outbox
from psycopg import sql
from psycopg.types.json import Json

from cj_health import cli
from cj_health.db import Database, connect
from cj_health.eng5.anchors import ANCHORS, DEV_ASSIGNMENT_ID, GRADE_SCALE, register_anchors
from cj_health.eng5.judge import MockJudge
from cj_health.eng5.reset import check_reset_allowed, reset
from cj_health.eng5.runner import (
    ARTEFACT_NAME,
    agreement,
    default_max_comparisons,
    execute_batch,
    finalize_batch,
    schedule_pairs,
)
from cj_health.errors import EXIT_REFUSED, CjHealthError, Refused
from cj_health.schema import SERVICE_TABLES, load_migrations
from python_fix.events import BatchFacts, build_outbox_rows

# Measured with production's grade projection for the default 12 students and 20 comparisons
# per essay: seed 0 gives exact 0.33 and adjacent 0.92; seeds 0-9 give exact 0.25-0.58 and
# adjacent 0.58-1.00. Chance is about 0.10 exact and 0.28 adjacent on the 10-step scale (F + 9
# ENG5 grades).
AGREEMENT_SEED = 0
EXACT_FLOOR = 0.25
ADJACENT_FLOOR = 0.80


@pytest.fixture(autouse=True)
def _outbox_rows_pass_the_contracts(request):
    """Every outbox row a test here leaves behind passes its consumer's contract."""
    database = None
    for name in ("cj_db", "cj_env"):
        if name in request.fixturenames:
            database = request.getfixturevalue(name)
    yield
    if database is not None:
        with connect(database) as conn:
            validate_outbox(conn)


def _snapshot(database: Database) -> dict[str, str]:
    """A fingerprint of every row of every CJ table."""
    return table_fingerprint(database, SERVICE_TABLES)


def _count(database: Database, query: str, params: tuple = ()) -> int:
    with connect(database) as conn:
        return conn.execute(query, params).fetchone()[0]


# --- reset and its guard ------------------------------------------------------------------


def _as_server(url: str, embedded: bool = False) -> Database:
    return Database(url, embedded=embedded)


@pytest.mark.parametrize(
    ("url", "embedded", "env"),
    [
        ("postgresql://u@db.example/cj", False, {}),
        ("postgresql://u@db.example/cj_prod", False, {}),
        ("postgresql://u@db.example/cj_dev_copy", False, {}),
        ("postgresql://u@db.example/cj", False, {"CJ_ENVIRONMENT": "ci"}),
        ("postgresql://u@db.example/cj_dev", False, {"CJ_ENVIRONMENT": "staging"}),
        ("postgresql://u@db.example/cj_test", False, {"CJ_ENVIRONMENT": "production"}),
        ("postgresql://u@db.example/cj", True, {"CJ_ENVIRONMENT": "Production"}),
        ("postgresql://u@db.example/cj_dev", True, {"CJ_ENVIRONMENT": "staging"}),
    ],
)
def test_the_guard_refuses_non_dev_targets(url, embedded, env):
    with pytest.raises(Refused, match="refusing to reset") as excinfo:
        check_reset_allowed(_as_server(url, embedded), env)
    assert excinfo.value.exit_code == EXIT_REFUSED


@pytest.mark.parametrize(
    ("url", "embedded", "env"),
    [
        ("postgresql://u@db.example/cj", True, {}),
        ("postgresql://u@db.example/cj_dev", False, {}),
        ("postgresql://u@db.example/cj_test", False, {}),
        ("postgresql://u@db.example/cj", False, {"CJ_ENVIRONMENT": "dev"}),
        ("postgresql://u@db.example/cj", False, {"CJ_ENVIRONMENT": "TEST"}),
    ],
)
def test_the_guard_allows_dev_and_test_targets(url, embedded, env):
    check_reset_allowed(_as_server(url, embedded), env)


@pytest.mark.parametrize(
    "env", [{}, {"CJ_ENVIRONMENT": "staging"}, {"CJ_ENVIRONMENT": "production"}]
)
@pytest.mark.parametrize("drop", [False, True])
def test_a_refused_reset_changes_not_one_row(cj_db, tmp_path, env, drop):
    execute_batch(cj_db, students=3, max_comparisons=20, out_dir=tmp_path)
    # The test database is named cjt_<hex>: on a non-embedded server it is not dev or test.
    target = _as_server(cj_db.url, embedded=False)
    before = _snapshot(cj_db)
    with pytest.raises(Refused):
        reset(target, drop=drop, env=env)
    assert _snapshot(cj_db) == before
    assert _count(cj_db, "select count(*) from cj_batch_uploads") == 1


def test_reset_empties_every_cj_table(cj_db, tmp_path):
    execute_batch(cj_db, students=3, max_comparisons=20, out_dir=tmp_path)
    result = reset(_as_server(cj_db.url), env={"CJ_ENVIRONMENT": "test"})
    assert not result.dropped
    assert result.rows_removed["cj_batch_uploads"] == 1
    assert result.rows_removed["anchor_essay_references"] == 12
    assert result.rows_removed["event_outbox"] == 3
    for table in SERVICE_TABLES:
        assert _count(cj_db, sql.SQL("select count(*) from {}").format(sql.Identifier(table))) == 0
    assert "emptied the CJ tables" in result.summary()
    # Reseed: the next batch works and ids start again from 1.
    again = execute_batch(cj_db, students=3, max_comparisons=20, out_dir=tmp_path)
    assert again.cj_batch_id == 1 and again.state == "COMPLETED"


def test_reset_counts_the_embedded_server_as_dev(cj_db, tmp_path):
    execute_batch(cj_db, students=2, max_comparisons=10, out_dir=tmp_path)
    reset(_as_server(cj_db.url, embedded=True), env={})
    assert _count(cj_db, "select count(*) from cj_batch_uploads") == 0


def test_reset_accepts_a_database_named_test(admin_db, make_database, tmp_path):
    database = make_database()
    renamed = f"{database.dbname}_test"
    with connect(admin_db, autocommit=True) as conn:
        conn.execute(
            sql.SQL("alter database {} rename to {}").format(
                sql.Identifier(database.dbname), sql.Identifier(renamed)
            )
        )
    target = _as_server(admin_db.with_dbname(renamed).url)
    try:
        result = reset(target, drop=True, env={})
        assert result.dropped and result.applied_migrations
        assert _count(target, "select count(*) from cj_batch_uploads") == 0
    finally:
        with connect(admin_db, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(renamed))
            )


def test_reset_drop_recreates_the_tables(cj_db, tmp_path):
    execute_batch(cj_db, students=2, max_comparisons=10, out_dir=tmp_path)
    with connect(cj_db) as conn:
        conn.execute("alter table cj_batch_uploads add column stray_column integer")
    result = reset(_as_server(cj_db.url), drop=True, env={"CJ_ENVIRONMENT": "dev"})
    assert result.dropped and result.rows_removed["cj_batch_uploads"] == 1
    assert result.applied_migrations == [f"{m.version}_{m.name}" for m in load_migrations()]
    stray = _count(
        cj_db,
        "select count(*) from information_schema.columns where column_name = 'stray_column'",
    )
    assert stray == 0
    made = execute_batch(cj_db, students=2, max_comparisons=10, out_dir=tmp_path)
    assert made.cj_batch_id == 1 and made.state == "COMPLETED"


def test_reset_without_tables_says_what_to_do(empty_db):
    with pytest.raises(CjHealthError, match="db init"):
        reset(_as_server(empty_db.url), env={"CJ_ENVIRONMENT": "test"})


def test_cli_reset_refusal_exits_3_and_changes_nothing(cj_env, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CJ_ENVIRONMENT", raising=False)
    execute_batch(cj_env, students=2, max_comparisons=10, out_dir=tmp_path)
    before = _snapshot(cj_env)
    assert cli.main(["eng5", "reset"]) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert err.startswith("cj-health: refusing to reset") and err.count("\n") == 1
    assert _snapshot(cj_env) == before


def test_cli_reset_with_test_environment(cj_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CJ_ENVIRONMENT", "test")
    execute_batch(cj_env, students=2, max_comparisons=10, out_dir=tmp_path)
    assert cli.main(["eng5", "reset"]) == 0
    assert "emptied the CJ tables" in capsys.readouterr().out
    assert _count(cj_env, "select count(*) from cj_batch_uploads") == 0


# --- register-anchors ---------------------------------------------------------------------


def test_register_anchors_twice_leaves_twelve_rows(cj_db):
    assert register_anchors(cj_db) == 12
    assert register_anchors(cj_db) == 12
    with connect(cj_db) as conn:
        rows = conn.execute(
            "select anchor_label, grade, grade_scale, assignment_id "
            "from anchor_essay_references order by anchor_label"
        ).fetchall()
    assert [(label, grade) for label, grade, _, _ in rows] == list(ANCHORS)
    assert {(scale, assignment) for _, _, scale, assignment in rows} == {
        (GRADE_SCALE, DEV_ASSIGNMENT_ID)
    }


def test_register_anchors_per_assignment(cj_env, capsys):
    assert cli.main(["eng5", "register-anchors"]) == 0
    assert cli.main(["eng5", "register-anchors", "--assignment-id", "other-assignment"]) == 0
    assert cli.main(["eng5", "register-anchors"]) == 0
    assert "12 ENG5 anchors" in capsys.readouterr().out
    counts = dict(
        _rows(cj_env, "select assignment_id, count(*) from anchor_essay_references group by 1")
    )
    assert counts == {DEV_ASSIGNMENT_ID: 12, "other-assignment": 12}


def _rows(database: Database, query: str, params: tuple = ()) -> list[tuple]:
    with connect(database) as conn:
        return conn.execute(query, params).fetchall()


# --- execute ------------------------------------------------------------------------------


def test_execute_completes_a_batch_whose_grades_agree_with_the_hidden_ones(cj_db, tmp_path):
    lines: list[str] = []
    result = execute_batch(cj_db, seed=AGREEMENT_SEED, out_dir=tmp_path, progress=lines.append)

    assert (result.upload_status, result.state) == ("COMPLETE_STABLE", "COMPLETED")
    assert (result.students, result.anchors, result.projections) == (12, 12, 12)
    assert result.comparisons == result.comparisons_completed == default_max_comparisons(24)
    assert result.finalization.events_written == 3
    assert result.agreement_exact >= EXACT_FLOOR
    assert result.agreement_adjacent >= ADJACENT_FLOOR
    assert any(line.startswith("callbacks: ") for line in lines)
    assert any("finalized" in line for line in lines)

    projected = dict(
        _rows(
            cj_db,
            "select p.els_essay_id, p.primary_grade from grade_projections p "
            "where p.cj_batch_id = %s",
            (result.cj_batch_id,),
        )
    )
    document = json.loads(result.artefact_path.read_text())
    students = [e for e in document["essays"] if e["role"] == "student"]
    # The artefact's projected grades are the stored ones, beside the hidden grades.
    assert {e["els_essay_id"]: e["projected_grade"] for e in students} == projected
    exact, adjacent = agreement([(e["hidden_grade"], e["projected_grade"]) for e in students])
    assert document["agreement"] == {"exact": exact, "adjacent": adjacent, "students": 12}
    assert (exact, adjacent) == (result.agreement_exact, result.agreement_adjacent)


def test_execute_writes_the_batch_like_the_service(cj_db, tmp_path):
    result = execute_batch(cj_db, students=4, max_comparisons=40, out_dir=tmp_path, seed=3)
    with connect(cj_db) as conn:
        upload = conn.execute(
            "select bos_batch_id, event_correlation_id, language, course_code, "
            "expected_essay_count, assignment_id, completed_at is not null "
            "from cj_batch_uploads where id = %s",
            (result.cj_batch_id,),
        ).fetchone()
        state = conn.execute(
            "select total_comparisons, submitted_comparisons, completed_comparisons, "
            "failed_comparisons, partial_scoring_triggered, total_budget "
            "from cj_batch_states where batch_id = %s",
            (result.cj_batch_id,),
        ).fetchone()
        essays = conn.execute(
            "select els_essay_id, is_anchor, processing_metadata from cj_processed_essays "
            "where cj_batch_id = %s",
            (result.cj_batch_id,),
        ).fetchall()
        pending = conn.execute(
            "select count(*) from cj_comparison_pairs where cj_batch_id = %s and ("
            "winner not in ('essay_a', 'essay_b') or winner is null or completed_at is null "
            "or submitted_at is null or completed_at < submitted_at or confidence is null "
            "or justification is null or request_correlation_id is null)",
            (result.cj_batch_id,),
        ).fetchone()[0]
    assert upload[0] == result.bos_batch_id and str(uuid.UUID(upload[1])) == upload[1]
    assert upload[2:] == ("en", "ENG5", 4, DEV_ASSIGNMENT_ID, True)
    assert state == (40, 40, 40, 0, True, 40)
    assert pending == 0

    anchors = [e for e in essays if e[1]]
    students = [e for e in essays if not e[1]]
    assert len(anchors) == 12 and len(students) == 4
    references = dict(_rows(cj_db, "select id, anchor_label from anchor_essay_references"))
    for essay_id, _, metadata in anchors:
        match = re.fullmatch(r"ANCHOR_(\d+)_[0-9a-f]{8}", essay_id)
        assert match and int(match.group(1)) == metadata["anchor_ref_id"]
        assert metadata["is_anchor"] is True
        assert references[metadata["anchor_ref_id"]] == metadata["anchor_label"]
        assert metadata["known_grade"] == dict(ANCHORS)[metadata["anchor_label"]]
    for essay_id, _, metadata in students:
        assert str(uuid.UUID(essay_id)) == essay_id
        assert metadata == {"is_anchor": False}  # no hidden grade where monitoring looks


def test_execute_without_finalize_leaves_the_batch_waiting(cj_db, tmp_path):
    result = execute_batch(cj_db, students=3, max_comparisons=25, out_dir=tmp_path, finalize=False)
    assert (result.upload_status, result.state) == ("PERFORMING_COMPARISONS", "WAITING_CALLBACKS")
    assert result.finalization is None and result.agreement_exact is None
    assert _count(cj_db, "select count(*) from grade_projections") == 0
    assert _count(cj_db, "select count(*) from event_outbox") == 0
    assert (
        _count(
            cj_db,
            "select completed_comparisons from cj_batch_states where batch_id = %s",
            (result.cj_batch_id,),
        )
        == 25
    )


def test_execute_with_one_student_takes_the_insufficient_essays_path(cj_db, tmp_path):
    result = execute_batch(cj_db, students=1, max_comparisons=30, out_dir=tmp_path)
    assert (result.upload_status, result.state) == ("COMPLETE_INSUFFICIENT_ESSAYS", "COMPLETED")
    assert result.finalization.outcome == "insufficient_essays"
    assert result.projections == 0
    assert result.agreement_exact is None and result.agreement_adjacent is None
    assert not any("agreement" in line for line in result.summary_lines())


def test_the_artefact_holds_ids_counts_and_grades_but_no_text(cj_db, tmp_path):
    out_dir = tmp_path / "run"
    result = execute_batch(cj_db, students=5, max_comparisons=50, out_dir=out_dir, seed=7)
    assert result.artefact_path == out_dir / ARTEFACT_NAME
    raw = result.artefact_path.read_text()
    document = json.loads(raw)
    assert document["cj_batch_id"] == result.cj_batch_id
    assert document["bos_batch_id"] == result.bos_batch_id
    assert document["counts"] == {
        "students": 5,
        "anchors": 12,
        "comparisons": 50,
        "comparisons_completed": 50,
        "projections": 5,
    }
    assert len(document["essays"]) == 17
    for essay in document["essays"]:
        assert {"els_essay_id", "role", "hidden_grade", "projected_grade"} <= set(essay)
    texts = [
        row[0] for row in _rows(cj_db, "select assessment_input_text from cj_processed_essays")
    ]
    assert texts and not any(text in raw for text in texts)
    assert "user_id" not in raw
    assert not list(out_dir.glob(".*.tmp"))


def test_many_batches_in_one_database_with_the_same_seed(cj_db, tmp_path):
    first = execute_batch(cj_db, students=3, max_comparisons=20, out_dir=tmp_path / "a", seed=1)
    second = execute_batch(cj_db, students=3, max_comparisons=20, out_dir=tmp_path / "b", seed=1)
    assert first.cj_batch_id != second.cj_batch_id
    assert first.bos_batch_id != second.bos_batch_id
    assert not {e["els_essay_id"] for e in first.essays} & {
        e["els_essay_id"] for e in second.essays
    }
    # The seed fixes the hidden qualities, not the ids.
    assert [e["hidden_quality"] for e in first.essays] == [
        e["hidden_quality"] for e in second.essays
    ]
    assert _count(cj_db, "select count(*) from anchor_essay_references") == 12
    assert _count(cj_db, "select count(*) from event_outbox") == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"students": 0}, "--students"),
        ({"students": 501}, "--students"),
        ({"max_comparisons": 0}, "--max-comparisons"),
        ({"bos_batch_id": "x" * 37}, "--batch-id"),
    ],
)
def test_execute_rejects_bad_input_before_writing(cj_db, tmp_path, kwargs, message):
    before = _snapshot(cj_db)
    with pytest.raises(CjHealthError, match=message):
        execute_batch(cj_db, out_dir=tmp_path, **kwargs)
    assert _snapshot(cj_db) == before


def test_execute_refuses_a_bos_batch_id_that_exists(cj_db, tmp_path):
    made = execute_batch(cj_db, students=2, max_comparisons=10, out_dir=tmp_path)
    before = _snapshot(cj_db)
    with pytest.raises(CjHealthError, match="already exists"):
        execute_batch(cj_db, bos_batch_id=made.bos_batch_id, out_dir=tmp_path)
    assert _snapshot(cj_db) == before


def test_a_failed_finalization_is_one_line_and_leaves_the_batch_scoring(cj_db, tmp_path):
    bos_batch_id = str(uuid.uuid4())
    facts = BatchFacts(
        1, bos_batch_id, uuid.uuid4(), None, "ENG5", "eng5-runner", None, datetime.now(UTC)
    )
    queued = build_outbox_rows(facts, [], {}, ("mock", "mock-judge-v1"))[0]
    with connect(cj_db) as conn:  # an unpublished completion event already queued for it
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
    with pytest.raises(CjHealthError, match="finalizing CJ batch 1 .* failed: duplicate key"):
        execute_batch(
            cj_db, bos_batch_id=bos_batch_id, students=2, max_comparisons=10, out_dir=tmp_path
        )
    state = _rows(cj_db, "select u.status::text, s.state::text from cj_batch_uploads u "
                         "join cj_batch_states s on s.batch_id = u.id where u.id = 1")
    assert state == [("PERFORMING_COMPARISONS", "SCORING")]
    # The projector committed its projections in its own session before the outbox failed;
    # nothing else of phase 2 is there.
    assert _count(cj_db, "select count(*) from grade_projections") == 2
    assert _count(cj_db, "select count(*) from event_outbox") == 1
    with connect(cj_db) as conn:
        conn.execute("update event_outbox set published_at = now()")
    assert finalize_batch(cj_db, 1).projections_reused
    assert _rows(cj_db, "select state::text from cj_batch_states") == [("COMPLETED",)]
    assert _count(cj_db, "select count(*) from grade_projections") == 2


def test_execute_needs_the_schema(empty_db, tmp_path):
    with pytest.raises(CjHealthError, match="cj-health db init"):
        execute_batch(empty_db, out_dir=tmp_path)


def test_cli_execute_prints_progress_summary_and_artefact(cj_env, tmp_path, capsys):
    bos_batch_id = str(uuid.uuid4())
    argv = ["eng5", "execute", "--students", "3", "--max-comparisons", "20", "--seed", "2"]
    argv += ["--batch-id", bos_batch_id, "--out-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "callbacks: 20/20 comparisons judged" in out
    assert f"(BOS batch {bos_batch_id}): COMPLETE_STABLE / COMPLETED" in out
    assert "agreement with hidden grades: exact" in out
    assert f"artefact: {tmp_path / ARTEFACT_NAME}" in out
    assert (tmp_path / ARTEFACT_NAME).exists()


def test_cli_execute_bad_input_is_one_line_and_exit_2(cj_env, capsys):
    assert cli.main(["eng5", "execute", "--students", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cj-health: --students") and err.count("\n") == 1


# --- the mock judge and the pair schedule --------------------------------------------------


def test_the_judge_is_seeded_and_deterministic():
    qualities = np.random.default_rng(5).uniform(0, 8, size=(200, 2))
    runs = [[MockJudge(seed).compare(a, b) for a, b in qualities] for seed in (11, 11, 12)]
    assert runs[0] == runs[1]
    assert [j.winner for j in runs[0]] != [j.winner for j in runs[2]]


def test_the_judge_prefers_higher_quality_with_noise():
    judge = MockJudge(0)
    one_grade_apart = [judge.compare(5.0, 4.0).winner for _ in range(1000)]
    far_apart = [judge.compare(1.0, 7.0).winner for _ in range(1000)]
    close = [judge.compare(4.0, 4.0).winner for _ in range(1000)]
    assert 0.85 < one_grade_apart.count("essay_a") / 1000 < 0.99
    assert far_apart.count("essay_b") == 1000
    assert 0.4 < close.count("essay_a") / 1000 < 0.6
    verdict = judge.compare(6.0, 2.0)
    assert 0.5 <= verdict.confidence <= 1.0 and verdict.justification


def test_the_pair_schedule_is_distinct_and_even():
    pairs = schedule_pairs(24, 144, np.random.default_rng(0))
    assert len(pairs) == 144 and len({frozenset(p) for p in pairs}) == 144
    counts = np.bincount(np.array(pairs).ravel(), minlength=24)
    assert counts.min() >= 9 and counts.max() <= 15
    assert len(schedule_pairs(5, 100, np.random.default_rng(0))) == 10  # every distinct pair
