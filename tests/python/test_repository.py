"""The anchor-flag repository patch against real PostgreSQL, through production's interface:
`PostgreSQLCJEssayRepository().create_or_update_cj_processed_essay(session, …)` on a SQLAlchemy
AsyncSession that the caller commits or rolls back."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from cj_health.db import Database, connect
from cj_health.service_adapter import run_with_sessions
from python_fix.repository import EssayMoveRefused, PostgreSQLCJEssayRepository


def _new_batch(conn: psycopg.Connection) -> int:
    batch_id = conn.execute(
        "insert into cj_batch_uploads (bos_batch_id, event_correlation_id, language, "
        "course_code, expected_essay_count, status) values (%s, %s, 'en', 'ENG5', 2, "
        "'PERFORMING_COMPARISONS') returning id",
        (str(uuid.uuid4()), str(uuid.uuid4())),
    ).fetchone()[0]
    conn.execute(
        "insert into cj_batch_states (batch_id, state, total_comparisons) "
        "values (%s, 'WAITING_CALLBACKS', 0)",
        (batch_id,),
    )
    return batch_id


class Caller:
    """The service side: several repository calls in one session and transaction that the
    test commits or rolls back."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def upsert_many(self, calls: list[tuple], *, commit: bool = True):
        """Run each (batch_id, essay_id, metadata, text) in one session; return results or
        the first exception (then commit what came before it when `commit`)."""
        repository = PostgreSQLCJEssayRepository()

        async def work(provider):
            results = []
            async with provider.session() as session:
                await session.begin()
                try:
                    for batch_id, essay_id, metadata, text in calls:
                        results.append(
                            await repository.create_or_update_cj_processed_essay(
                                session,
                                batch_id,
                                essay_id,
                                f"storage-{essay_id}",
                                text,
                                metadata,
                            )
                        )
                except Exception as exc:
                    results.append(exc)
                if commit:
                    await session.commit()
                else:
                    await session.rollback()
            return results

        return run_with_sessions(self.database.url, work)


def _upsert(conn, batch_id: int, essay_id: str, metadata=None, text: str | None = "text"):
    """One repository call in its own transaction: committed on success, rolled back (so
    nothing is written) when it raises."""
    repository = PostgreSQLCJEssayRepository()

    async def work(provider):
        async with provider.session() as session, session.begin():
            return await repository.create_or_update_cj_processed_essay(
                session, batch_id, essay_id, f"storage-{essay_id}", text, metadata
            )

    return run_with_sessions(conn.info.dsn, work)


def _row(conn, essay_id: str) -> tuple:
    return conn.execute(
        "select cj_batch_id, is_anchor, processing_metadata::text, text_storage_id, "
        "assessment_input_text, updated_at from cj_processed_essays where els_essay_id = %s",
        (essay_id,),
    ).fetchone()


def _flag_and_metadata(conn, essay_id: str) -> tuple[bool, dict]:
    row = conn.execute(
        "select is_anchor, processing_metadata from cj_processed_essays where els_essay_id = %s",
        (essay_id,),
    ).fetchone()
    return row[0], row[1]


@pytest.fixture
def conn(cj_db: Database):
    with connect(cj_db, autocommit=True) as connection:
        yield connection


@pytest.fixture
def batch_id(conn) -> int:
    return _new_batch(conn)


ACCEPTED = [
    (True, True),
    (False, False),
    ("true", True),
    ("TRUE", True),
    ("True", True),
    ("false", False),
    ("FALSE", False),
    ("fAlSe", False),
    (1, True),
    (0, False),
]
REJECTED = ["yes", "no", "1", "", " true", 2, -1, 1.0, None, [], [True], {"v": True}]


def test_insert_takes_the_flag_from_metadata(conn, batch_id):
    for number, (value, expected) in enumerate(ACCEPTED):
        essay_id = f"essay-{number}"
        result = _upsert(conn, batch_id, essay_id, {"is_anchor": value, "known_grade": "B"})
        flag, metadata = _flag_and_metadata(conn, essay_id)
        assert flag is expected, value
        assert result.is_anchor is expected and result.created
        # The stored metadata carries the same boolean as the column, as JSON true/false.
        assert metadata == {"is_anchor": expected, "known_grade": "B"}, value
        text_flag = conn.execute(
            "select processing_metadata->>'is_anchor' from cj_processed_essays "
            "where els_essay_id = %s",
            (essay_id,),
        ).fetchone()[0]
        assert text_flag == ("true" if expected else "false")


def test_update_takes_the_flag_when_the_key_is_present(conn, batch_id):
    for number, (value, expected) in enumerate(ACCEPTED):
        essay_id = f"essay-{number}"
        _upsert(conn, batch_id, essay_id, {"is_anchor": not expected})
        result = _upsert(conn, batch_id, essay_id, {"is_anchor": value})
        assert _flag_and_metadata(conn, essay_id)[0] is expected, value
        assert result.is_anchor is expected and not result.created


def test_insert_without_the_key_is_a_student(conn, batch_id):
    _upsert(conn, batch_id, "student-1", {"source": "upload"})
    _upsert(conn, batch_id, "student-2", None)
    _upsert(conn, batch_id, "student-3", {})
    for essay_id in ("student-1", "student-2", "student-3"):
        assert _flag_and_metadata(conn, essay_id)[0] is False


@pytest.mark.parametrize("later_metadata", [None, {}, {"spellchecked": True}])
def test_update_without_the_key_keeps_an_anchor_an_anchor(conn, batch_id, later_metadata):
    """The Batch 20 regression: insert with true, update without the key, still true."""
    _upsert(conn, batch_id, "ANCHOR_1_0a1b2c3d", {"is_anchor": True, "known_grade": "A"})
    _upsert(conn, batch_id, "ANCHOR_1_0a1b2c3d", later_metadata)
    flag, metadata = _flag_and_metadata(conn, "ANCHOR_1_0a1b2c3d")
    assert flag is True
    assert metadata["is_anchor"] is True and metadata["known_grade"] == "A"


def test_update_without_the_key_keeps_a_student_a_student(conn, batch_id):
    _upsert(conn, batch_id, "student-1", {"is_anchor": False})
    _upsert(conn, batch_id, "student-1", {"note": "x"})
    assert _flag_and_metadata(conn, "student-1")[0] is False


def test_metadata_is_merged_and_never_wiped(conn, batch_id):
    _upsert(conn, batch_id, "essay-1", {"is_anchor": "true", "known_grade": "B", "a": 1})
    _upsert(conn, batch_id, "essay-1", None)
    _upsert(conn, batch_id, "essay-1", {})
    _upsert(conn, batch_id, "essay-1", {"a": 2, "b": 3})
    flag, metadata = _flag_and_metadata(conn, "essay-1")
    assert flag is True
    assert metadata == {"is_anchor": True, "known_grade": "B", "a": 2, "b": 3}


@pytest.mark.parametrize("text", [None, 42])
def test_text_is_required_and_a_missing_one_leaves_the_row_as_it_was(conn, batch_id, text):
    """assessment_input_text is NOT NULL in production: None is refused before any write."""
    _upsert(conn, batch_id, "essay-1", {"is_anchor": True}, text="first text")
    before = _row(conn, "essay-1")
    with pytest.raises(ValueError, match="essay-1: assessment_input_text must be a string"):
        _upsert(conn, batch_id, "essay-1", {"is_anchor": False}, text=text)
    assert _row(conn, "essay-1") == before
    with pytest.raises(ValueError, match="essay-2: assessment_input_text"):
        _upsert(conn, batch_id, "essay-2", {}, text=text)
    assert conn.execute("select count(*) from cj_processed_essays").fetchone()[0] == 1


def test_rejected_value_on_insert_writes_nothing(conn, batch_id):
    for value in REJECTED:
        with pytest.raises(ValueError) as excinfo:
            _upsert(conn, batch_id, "essay-x", {"is_anchor": value})
        message = str(excinfo.value)
        assert "essay-x" in message and repr(value) in message
        count = conn.execute("select count(*) from cj_processed_essays").fetchone()[0]
        assert count == 0, value


@pytest.mark.parametrize("stored", [True, False])
def test_rejected_value_on_update_leaves_the_row_unchanged(conn, batch_id, stored):
    _upsert(conn, batch_id, "essay-x", {"is_anchor": stored, "known_grade": "C+"})
    before = _row(conn, "essay-x")
    for value in REJECTED:
        with pytest.raises(ValueError) as excinfo:
            _upsert(conn, batch_id, "essay-x", {"is_anchor": value, "known_grade": "A"}, "new")
        assert "essay-x" in str(excinfo.value) and repr(value) in str(excinfo.value)
        assert _row(conn, "essay-x") == before, value


def test_rejection_inside_a_caller_transaction_keeps_earlier_work(cj_db, batch_id):
    """The caller owns the transaction: a rejected value raises before any write, so the
    caller may still commit what it did before."""
    results = Caller(cj_db).upsert_many(
        [(batch_id, "essay-ok", {"is_anchor": True}, "text"),
         (batch_id, "essay-bad", {"is_anchor": "yes"}, "text")],
    )  # fmt: skip
    assert isinstance(results[-1], ValueError)
    with connect(cj_db) as conn:
        ids = [r[0] for r in conn.execute("select els_essay_id from cj_processed_essays")]
    assert ids == ["essay-ok"]


def test_the_caller_owns_the_transaction(cj_db, batch_id):
    results = Caller(cj_db).upsert_many(
        [(batch_id, "essay-1", {"is_anchor": True}, "text")], commit=False
    )
    assert results[0].created
    with connect(cj_db) as conn:
        assert conn.execute("select count(*) from cj_processed_essays").fetchone()[0] == 0


def test_an_unknown_batch_is_a_clear_error(conn):
    with pytest.raises(ValueError, match="CJ batch 999 does not exist"):
        _upsert(conn, 999, "essay-1", {"is_anchor": True})


def test_metadata_must_be_a_mapping(conn, batch_id):
    with pytest.raises(ValueError, match="essay-1"):
        _upsert(conn, batch_id, "essay-1", ["is_anchor"])


def test_an_essay_without_results_may_move_batch(conn, batch_id):
    other = _new_batch(conn)
    _upsert(conn, batch_id, "essay-1", {"is_anchor": True})
    _upsert(conn, other, "essay-1", None)
    assert _row(conn, "essay-1")[0] == other
    assert _flag_and_metadata(conn, "essay-1")[0] is True


def _add_pair(conn, batch_id: int, a: str, b: str) -> None:
    conn.execute(
        "insert into cj_comparison_pairs (cj_batch_id, essay_a_els_id, essay_b_els_id, "
        "prompt_text) values (%s, %s, %s, 'compare')",
        (batch_id, a, b),
    )


def _add_projection(conn, batch_id: int, essay_id: str) -> None:
    conn.execute(
        "insert into grade_projections (els_essay_id, cj_batch_id, primary_grade, "
        "confidence_score, confidence_label, calculation_metadata) "
        "values (%s, %s, 'B', 0.5, 'MID', '{}')",
        (essay_id, batch_id),
    )


@pytest.mark.parametrize("results", ["pair_as_a", "pair_as_b", "projection"])
def test_an_essay_with_results_cannot_move_batch(conn, batch_id, results):
    other = _new_batch(conn)
    _upsert(conn, batch_id, "essay-1", {"is_anchor": False})
    _upsert(conn, batch_id, "essay-2", {"is_anchor": False})
    if results == "pair_as_a":
        _add_pair(conn, batch_id, "essay-1", "essay-2")
    elif results == "pair_as_b":
        _add_pair(conn, batch_id, "essay-2", "essay-1")
    else:
        _add_projection(conn, batch_id, "essay-1")
    before = _row(conn, "essay-1")
    with pytest.raises(EssayMoveRefused, match=f"essay-1 .* batch {batch_id}"):
        _upsert(conn, other, "essay-1", {"is_anchor": True, "new": 1}, text="moved")
    assert _row(conn, "essay-1") == before
    # An update in its own batch is still fine.
    _upsert(conn, batch_id, "essay-1", {"is_anchor": True})
    assert _flag_and_metadata(conn, "essay-1")[0] is True
