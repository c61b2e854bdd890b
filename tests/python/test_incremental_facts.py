"""The refresh keeps the stored per-batch facts (int_batch_facts_incremental) equal to a full
rebuild, row for row, while recomputing only the batches whose rows changed.

The database is production-shaped (production's head schema and one batch per shape the
service leaves behind: guest batches, every status, both metadata shapes, three events per
finished batch), then grown by copying those batches. A seeded random workload of inserts,
updates (some without touching any timestamp, some backdating them), rows moved to another
batch, deletes and new or deleted batches (tests/python/workload.py) runs in rounds; after
each round one incremental `refresh` must leave the stored facts equal to int_batch_facts
(the full computation), having recomputed every batch the round wrote to and not every batch,
and cj_batch_health equal to what a full rebuild gives; with the change feed and without it.
Time passing without any row changing must still change a time-based verdict.
"""

from __future__ import annotations

import random
import time

import pytest
from psycopg import sql
from refresh_support import FOUND_BY, MODES, facts_difference, start
from workload import DELETES, MOVES, WRITES, operation
from workload import shaped_and_built as built_with_copies

from cj_health.batch_facts import FACTS_TABLE
from cj_health.build import refresh
from cj_health.db import Database, connect, monitoring_schema

COPIES = 3  # each production shape is copied this many times before the workload
ROUNDS = 8
OPERATIONS_PER_ROUND = 12


def _workload(database: Database, rng: random.Random, with_deletes: bool) -> set[int]:
    kinds = WRITES + MOVES + (DELETES if with_deletes else ())
    touched: set[int] = set()
    with connect(database) as conn:
        for _ in range(OPERATIONS_PER_ROUND):
            touched |= operation(conn, rng, kinds)
            conn.commit()
    return touched


def after_rounds_batches(database: Database) -> list[int]:
    with connect(database) as conn:
        return [row[0] for row in conn.execute("select id from cj_batch_uploads")]


def _health(database: Database) -> list[tuple]:
    with connect(database) as conn:
        return conn.execute(
            sql.SQL("select * from {} order by cj_batch_id").format(
                sql.Identifier(monitoring_schema(), "cj_batch_health"))
        ).fetchall()


@pytest.fixture(params=MODES)
def shaped_and_built(empty_db: Database, request: pytest.FixtureRequest) -> tuple[Database, str]:
    built_with_copies(empty_db, COPIES)
    start(empty_db, request.param)
    return empty_db, request.param


def test_incremental_refresh_equals_a_full_rebuild(shaped_and_built: tuple[Database, str]) -> None:
    database, mode = shaped_and_built
    rng = random.Random(19)
    for round_number in range(ROUNDS):
        touched = _workload(database, rng, with_deletes=round_number % 3 == 2)
        facts = refresh(database).facts
        assert (facts.mode, facts.found_by) == ("incremental", FOUND_BY[mode]), facts.summary()
        # Every batch written to was recomputed, deletes and moves included.
        assert touched <= set(facts.batch_ids), round_number
        assert len(facts.batch_ids) < len(after_rounds_batches(database))
        with connect(database) as conn:
            assert facts_difference(conn) == (0, 0), f"round {round_number}: {facts.summary()}"
        after_incremental = _health(database)
        assert refresh(database, full=True).facts.mode == "full"
        assert _health(database) == after_incremental, round_number


def test_a_refresh_without_changes_writes_nothing(
    shaped_and_built: tuple[Database, str],
) -> None:
    database, _ = shaped_and_built
    with connect(database) as conn:
        before = conn.execute(
            sql.SQL("select count(*), sum(xmin::text::bigint) from {}").format(
                sql.Identifier(monitoring_schema(), FACTS_TABLE))).fetchone()
    facts = refresh(database).facts
    assert (facts.mode, facts.written, facts.deleted) == ("incremental", 0, 0)
    with connect(database) as conn:
        after = conn.execute(
            sql.SQL("select count(*), sum(xmin::text::bigint) from {}").format(
                sql.Identifier(monitoring_schema(), FACTS_TABLE))).fetchone()
    assert after == before  # not one stored row rewritten


def test_a_full_rebuild_writes_only_the_rows_that_differ(
    shaped_and_built: tuple[Database, str],
) -> None:
    """`refresh --full` recomputes every batch but rewrites only a stored row whose facts
    differ, restores a missing one and leaves every other row as it was (same xmin)."""
    database, _ = shaped_and_built
    facts_table = sql.Identifier(monitoring_schema(), FACTS_TABLE)
    with connect(database) as conn:
        changed, missing = (
            batch for (batch,) in conn.execute(
                sql.SQL("select cj_batch_id from {} order by cj_batch_id limit 2").format(
                    facts_table)))
        conn.execute(
            sql.SQL("update {} set essay_count = essay_count + 1 where cj_batch_id = %s").format(
                facts_table), (changed,))
        conn.execute(
            sql.SQL("delete from {} where cj_batch_id = %s").format(facts_table), (missing,))
        untouched_rows = sql.SQL(
            "select cj_batch_id, xmin::text from {} where cj_batch_id <> all(%s)"
            " order by cj_batch_id").format(facts_table)
        before = conn.execute(untouched_rows, ([changed, missing],)).fetchall()
        conn.commit()
    facts = refresh(database, full=True).facts
    assert (facts.mode, facts.written, facts.deleted) == ("full", 2, 0), facts.summary()
    with connect(database) as conn:
        assert facts_difference(conn) == (0, 0)
        assert conn.execute(untouched_rows, ([changed, missing],)).fetchall() == before
    facts = refresh(database, full=True).facts
    assert (facts.written, facts.deleted) == (0, 0), facts.summary()


def test_time_passing_changes_a_verdict_without_any_row_changing(
    shaped_and_built: tuple[Database, str],
) -> None:
    """A batch left COMPLETE_STABLE in WAITING_CALLBACKS becomes STUCK_FINALIZATION once it
    has been idle for stuck_after_minutes (5), at a refresh that writes no stored fact."""
    database, _ = shaped_and_built
    with connect(database) as conn:
        (batch,) = conn.execute(
            "select id from cj_batch_uploads where assignment_id is null order by id limit 1"
        ).fetchone()
        conn.execute("delete from grade_projections where cj_batch_id = %s", (batch,))
        conn.execute(
            "update cj_batch_uploads set status = 'COMPLETE_STABLE', completed_at = null,"
            " updated_at = (now() - interval '5 minutes' + interval '3 seconds')"
            " at time zone 'UTC' where id = %s", (batch,))
        conn.execute(
            "update cj_batch_states set state = 'WAITING_CALLBACKS', last_activity_at ="
            " now() - interval '5 minutes' + interval '3 seconds' where batch_id = %s",
            (batch,))
        conn.commit()
    refresh(database)  # the batch is recomputed
    with connect(database) as conn:
        issues, judged_idle = conn.execute(
            sql.SQL(
                "select health.issues, extract(epoch from refresh.refreshed_at"
                " - health.last_activity_at) / 60 from {} as health cross join {} as refresh"
                " where health.cj_batch_id = %s"
            ).format(
                sql.Identifier(monitoring_schema(), "cj_batch_health"),
                sql.Identifier(monitoring_schema(), "cj_batch_health_refresh"),
            ),
            (batch,),
        ).fetchone()
    assert ("STUCK_FINALIZATION" in issues) == (judged_idle > 5)
    deadline = time.monotonic() + 60
    while True:
        with connect(database) as conn:
            idle_minutes = conn.execute(
                "select extract(epoch from now() - last_activity_at) / 60"
                " from cj_batch_states where batch_id = %s", (batch,)).fetchone()[0]
        if idle_minutes > 5 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    result = refresh(database)
    assert (result.facts.mode, result.facts.written) == ("incremental", 0)
    with connect(database) as conn:
        issues = conn.execute(
            sql.SQL("select issues from {} where cj_batch_id = %s").format(
                sql.Identifier(monitoring_schema(), "cj_batch_health")), (batch,)).fetchone()[0]
    assert "STUCK_FINALIZATION" in issues
