"""The essay repository patch against real PostgreSQL, through production's interface, on both
of the service's drivers (asyncpg and psycopg): `PostgreSQLCJEssayRepository()` methods on a
SQLAlchemy AsyncSession that the caller commits or rolls back."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from finalizer_support import DRIVERS, run

from cj_health.db import Database, connect
from python_fix.models import ProcessedEssay
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

    def __init__(self, database: Database, driver: str) -> None:
        self.database = database
        self.driver = driver

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

        return run(self.database, work, self.driver)


@pytest.fixture(params=DRIVERS)
def driver(request) -> str:
    return request.param


@pytest.fixture
def upsert(cj_db: Database, driver: str):
    """One repository call in its own transaction: committed on success, rolled back (so
    nothing is written) when it raises."""
    repository = PostgreSQLCJEssayRepository()

    def call(batch_id: int, essay_id: str, metadata=None, text: str | None = "text"):
        async def work(provider):
            async with provider.session() as session, session.begin():
                return await repository.create_or_update_cj_processed_essay(
                    session, batch_id, essay_id, f"storage-{essay_id}", text, metadata
                )

        return run(cj_db, work, driver)

    return call


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


def test_insert_takes_the_flag_from_metadata(conn, batch_id, upsert):
    for number, (value, expected) in enumerate(ACCEPTED):
        essay_id = f"essay-{number}"
        result = upsert(batch_id, essay_id, {"is_anchor": value, "known_grade": "B"})
        flag, metadata = _flag_and_metadata(conn, essay_id)
        assert flag is expected, value
        assert result.is_anchor is expected and isinstance(result, ProcessedEssay)
        # The stored metadata carries the same boolean as the column, as JSON true/false.
        assert metadata == {"is_anchor": expected, "known_grade": "B"}, value
        text_flag = conn.execute(
            "select processing_metadata->>'is_anchor' from cj_processed_essays "
            "where els_essay_id = %s",
            (essay_id,),
        ).fetchone()[0]
        assert text_flag == ("true" if expected else "false")


def test_update_takes_the_flag_when_the_key_is_present(conn, batch_id, upsert):
    for number, (value, expected) in enumerate(ACCEPTED):
        essay_id = f"essay-{number}"
        upsert(batch_id, essay_id, {"is_anchor": not expected})
        result = upsert(batch_id, essay_id, {"is_anchor": value})
        assert _flag_and_metadata(conn, essay_id)[0] is expected, value
        assert result.is_anchor is expected and result.els_essay_id == essay_id


def test_insert_without_the_key_is_a_student(conn, batch_id, upsert):
    upsert(batch_id, "student-1", {"source": "upload"})
    upsert(batch_id, "student-2", None)
    upsert(batch_id, "student-3", {})
    for essay_id in ("student-1", "student-2", "student-3"):
        assert _flag_and_metadata(conn, essay_id)[0] is False


@pytest.mark.parametrize("later_metadata", [None, {}, {"spellchecked": True}])
def test_update_without_the_key_keeps_an_anchor_an_anchor(conn, batch_id, later_metadata, upsert):
    """The Batch 20 regression: insert with true, update without the key, still true."""
    upsert(batch_id, "ANCHOR_1_0a1b2c3d", {"is_anchor": True, "known_grade": "A"})
    upsert(batch_id, "ANCHOR_1_0a1b2c3d", later_metadata)
    flag, metadata = _flag_and_metadata(conn, "ANCHOR_1_0a1b2c3d")
    assert flag is True
    assert metadata["is_anchor"] is True and metadata["known_grade"] == "A"


def test_update_without_the_key_keeps_a_student_a_student(conn, batch_id, upsert):
    upsert(batch_id, "student-1", {"is_anchor": False})
    upsert(batch_id, "student-1", {"note": "x"})
    assert _flag_and_metadata(conn, "student-1")[0] is False


def test_metadata_is_merged_and_never_wiped(conn, batch_id, upsert):
    upsert(batch_id, "essay-1", {"is_anchor": "true", "known_grade": "B", "a": 1})
    upsert(batch_id, "essay-1", None)
    upsert(batch_id, "essay-1", {})
    upsert(batch_id, "essay-1", {"a": 2, "b": 3})
    flag, metadata = _flag_and_metadata(conn, "essay-1")
    assert flag is True
    assert metadata == {"is_anchor": True, "known_grade": "B", "a": 2, "b": 3}


@pytest.mark.parametrize("text", [None, 42])
def test_text_is_required_and_a_missing_one_leaves_the_row_as_it_was(conn, batch_id, text, upsert):
    """assessment_input_text is NOT NULL in production: None is refused before any write."""
    upsert(batch_id, "essay-1", {"is_anchor": True}, text="first text")
    before = _row(conn, "essay-1")
    with pytest.raises(ValueError, match="essay-1: assessment_input_text must be a string"):
        upsert(batch_id, "essay-1", {"is_anchor": False}, text=text)
    assert _row(conn, "essay-1") == before
    with pytest.raises(ValueError, match="essay-2: assessment_input_text"):
        upsert(batch_id, "essay-2", {}, text=text)
    assert conn.execute("select count(*) from cj_processed_essays").fetchone()[0] == 1


def test_rejected_value_on_insert_writes_nothing(conn, batch_id, upsert):
    for value in REJECTED:
        with pytest.raises(ValueError) as excinfo:
            upsert(batch_id, "essay-x", {"is_anchor": value})
        message = str(excinfo.value)
        assert "essay-x" in message and repr(value) in message
        count = conn.execute("select count(*) from cj_processed_essays").fetchone()[0]
        assert count == 0, value


@pytest.mark.parametrize("stored", [True, False])
def test_rejected_value_on_update_leaves_the_row_unchanged(conn, batch_id, stored, upsert):
    upsert(batch_id, "essay-x", {"is_anchor": stored, "known_grade": "C+"})
    before = _row(conn, "essay-x")
    for value in REJECTED:
        with pytest.raises(ValueError) as excinfo:
            upsert(batch_id, "essay-x", {"is_anchor": value, "known_grade": "A"}, "new")
        assert "essay-x" in str(excinfo.value) and repr(value) in str(excinfo.value)
        assert _row(conn, "essay-x") == before, value


def test_rejection_inside_a_caller_transaction_keeps_earlier_work(cj_db, batch_id, driver):
    """The caller owns the transaction: a rejected value raises before any write, so the
    caller may still commit what it did before."""
    results = Caller(cj_db, driver).upsert_many(
        [(batch_id, "essay-ok", {"is_anchor": True}, "text"),
         (batch_id, "essay-bad", {"is_anchor": "yes"}, "text")],
    )  # fmt: skip
    assert isinstance(results[-1], ValueError)
    with connect(cj_db) as conn:
        ids = [r[0] for r in conn.execute("select els_essay_id from cj_processed_essays")]
    assert ids == ["essay-ok"]


def test_the_caller_owns_the_transaction(cj_db, batch_id, driver):
    results = Caller(cj_db, driver).upsert_many(
        [(batch_id, "essay-1", {"is_anchor": True}, "text")], commit=False
    )
    assert isinstance(results[0], ProcessedEssay)
    with connect(cj_db) as conn:
        assert conn.execute("select count(*) from cj_processed_essays").fetchone()[0] == 0


def test_an_unknown_batch_is_a_clear_error(conn, upsert):
    with pytest.raises(ValueError, match="CJ batch 999 does not exist"):
        upsert(999, "essay-1", {"is_anchor": True})


def test_metadata_must_be_a_mapping(conn, batch_id, upsert):
    with pytest.raises(ValueError, match="essay-1"):
        upsert(batch_id, "essay-1", ["is_anchor"])


def test_an_essay_without_results_may_move_batch(conn, batch_id, upsert):
    other = _new_batch(conn)
    upsert(batch_id, "essay-1", {"is_anchor": True})
    upsert(other, "essay-1", None)
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
def test_an_essay_with_results_cannot_move_batch(conn, batch_id, results, upsert):
    other = _new_batch(conn)
    upsert(batch_id, "essay-1", {"is_anchor": False})
    upsert(batch_id, "essay-2", {"is_anchor": False})
    if results == "pair_as_a":
        _add_pair(conn, batch_id, "essay-1", "essay-2")
    elif results == "pair_as_b":
        _add_pair(conn, batch_id, "essay-2", "essay-1")
    else:
        _add_projection(conn, batch_id, "essay-1")
    before = _row(conn, "essay-1")
    with pytest.raises(EssayMoveRefused, match=f"essay-1 .* batch {batch_id}"):
        upsert(other, "essay-1", {"is_anchor": True, "new": 1}, text="moved")
    assert _row(conn, "essay-1") == before
    # An update in its own batch is still fine.
    upsert(batch_id, "essay-1", {"is_anchor": True})
    assert _flag_and_metadata(conn, "essay-1")[0] is True


def test_an_insert_without_metadata_stores_null(conn, batch_id, upsert):
    upsert(batch_id, "student-none", None)
    upsert(batch_id, "student-empty", {})
    upsert(batch_id, "student-flag", {"is_anchor": False})
    stored = dict(conn.execute(
        "select els_essay_id, processing_metadata::text from cj_processed_essays"
    ).fetchall())  # fmt: skip
    assert stored == {
        "student-none": None,
        "student-empty": None,
        "student-flag": '{"is_anchor": false}',
    }


COLUMNS = (
    "els_essay_id", "cj_batch_id", "text_storage_id", "assessment_input_text",
    "current_bt_score", "comparison_count", "created_at", "updated_at", "processing_metadata",
    "current_bt_se", "is_anchor",
)  # fmt: skip


def test_the_returned_row_carries_every_column(conn, batch_id, upsert):
    """What callers read from the returned row (batch preparation reads current_bt_score)
    is what the table holds, for an insert and for an update."""
    table_columns = [
        row[0]
        for row in conn.execute(
            "select column_name from information_schema.columns "
            "where table_name = 'cj_processed_essays' order by ordinal_position"
        )
    ]
    assert sorted(table_columns) == sorted(COLUMNS)
    inserted = upsert(batch_id, "essay-1", {"is_anchor": "true", "known_grade": "A"}, "text one")
    conn.execute("update cj_processed_essays set current_bt_score = 1.25, current_bt_se = 0.5, "
                 "comparison_count = 4 where els_essay_id = 'essay-1'")  # fmt: skip
    updated = upsert(batch_id, "essay-1", {"note": "x"}, "text two")
    for returned in (inserted, updated):
        stored = conn.execute(
            f"select {', '.join(COLUMNS)} from cj_processed_essays where els_essay_id = %s",
            ("essay-1",),
        ).fetchone()
        if returned is inserted:
            assert (returned.current_bt_score, returned.comparison_count) == (None, 0)
            continue
        assert {c: getattr(returned, c) for c in COLUMNS} == dict(zip(COLUMNS, stored,
                                                                      strict=True))  # fmt: skip
    assert updated.current_bt_score == 1.25 and updated.assessment_input_text == "text two"
    assert inserted.created_at is not None and updated.updated_at >= inserted.updated_at


def _in_session(cj_db, driver, work):
    """Run `work(repository, session)` in one transaction and commit it."""

    async def run_work(provider):
        async with provider.session() as session, session.begin():
            return await work(PostgreSQLCJEssayRepository(), session)

    return run(cj_db, run_work, driver)


def test_essays_scores_and_rankings(cj_db, conn, batch_id, upsert, driver):
    other = _new_batch(conn)
    for essay_id, flag in (("s-b", False), ("s-a", False), ("ANCHOR_1_ab", True),
                           ("s-c", False)):  # fmt: skip
        upsert(batch_id, essay_id, {"is_anchor": flag})
    upsert(other, "elsewhere", None)

    async def essays(repository, session):
        rows = await repository.get_essays_for_cj_batch(session, batch_id)
        return [essay.els_essay_id for essay in rows]

    assert _in_session(cj_db, driver, essays) == ["ANCHOR_1_ab", "s-a", "s-b", "s-c"]

    async def score(repository, session):
        await repository.update_essay_scores_in_batch(
            session, batch_id, {"s-a": 0.5, "s-b": -1.0, "ANCHOR_1_ab": 2.0}
        )
        return await repository.get_final_cj_rankings(session, batch_id)

    rankings = _in_session(cj_db, driver, score)
    assert [(r["rank"], r["els_essay_id"], r["bradley_terry_score"], r["is_anchor"])
            for r in rankings] == [
        (1, "ANCHOR_1_ab", 2.0, True), (2, "s-a", 0.5, False), (3, "s-b", -1.0, False),
        (4, "s-c", None, False),
    ]  # fmt: skip
    assert set(rankings[0]) == {
        "rank", "els_essay_id", "bradley_terry_score", "bradley_terry_se", "comparison_count",
        "is_anchor", "text_storage_id", "processing_metadata",
    }  # fmt: skip
    assert rankings[0]["processing_metadata"] == {"is_anchor": True}
    stored = dict(conn.execute(
        "select els_essay_id, current_bt_score from cj_processed_essays").fetchall())  # fmt: skip
    assert stored == {"s-a": 0.5, "s-b": -1.0, "ANCHOR_1_ab": 2.0, "s-c": None,
                      "elsewhere": None}  # fmt: skip


def test_scores_for_an_essay_outside_the_batch_write_nothing(cj_db, conn, batch_id, upsert,
                                                             driver):  # fmt: skip
    other = _new_batch(conn)
    upsert(batch_id, "s-a", None)
    upsert(other, "elsewhere", None)

    async def score(repository, session):
        await repository.update_essay_scores_in_batch(
            session, batch_id, {"s-a": 1.0, "elsewhere": 3.0}
        )

    with pytest.raises(ValueError, match=r"has no essays \['elsewhere'\]"):
        _in_session(cj_db, driver, score)
    assert conn.execute(
        "select count(*) from cj_processed_essays where current_bt_score is not null"
    ).fetchone()[0] == 0  # fmt: skip
