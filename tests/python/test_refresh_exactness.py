"""After any committed change and one `cj-health refresh`, the stored facts equal a full
recomputation, with the change feed and without it.

Each case below is a way the refresh used to keep a broken batch HEALTHY until a `refresh
--full`. Each runs on a copy of one production-shaped database (production's schema, one
batch per production shape), built and brought to steady refreshing in each mode
(refresh_support.start): without the feed (the refresh compares row fingerprints), and with
the feed trusted. Then the case's steps, then one refresh: the stored facts equal
int_batch_facts row for row, cj_batch_health equals what `refresh --full` gives, and the
batch the case broke shows the code it must. Then a second refresh changes nothing.

1. A row moved to another batch: a comparison pair (its old batch's counters no longer
   match: COUNTER_MISMATCH), an essay with its projection (MISATTRIBUTED_PROJECTION), an
   outbox row's aggregate_id (EVENTS_MISSING).
2. `truncate event_outbox` (every finished batch: EVENTS_MISSING), `truncate
   assessment_instructions`.
3. The feed just installed (reinstalled, with the feed), then `truncate event_outbox`.
4. The feed removed, a write, the feed installed again, all between two refreshes (without
   the feed to start with: installed, a write, removed, a write).
5. A delete whose session stays in a transaction, so that PostgreSQL has not yet counted it
   in pg_stat_user_tables when the refresh runs (asserted). The same after a crash, when the
   statistics are reset, is in test_refresh_durability.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest
from conftest import _create, _drop
from production_shapes import load_production_shapes
from psycopg import sql
from refresh_support import FEED, MODES, NO_FEED, health, start, stored_difference

from cj_health import change_feed
from cj_health.batch_facts import FactsUpdate
from cj_health.build import build, refresh
from cj_health.db import Database, connect


@pytest.fixture(scope="module")
def templates(admin_db: Database) -> Iterator[dict[str, str]]:
    """mode -> a database to copy: production shapes, built, refreshing steadily in mode."""
    shaped = _create(admin_db)
    made = [shaped]
    try:
        load_production_shapes(shaped)
        result = build(shaped)
        assert result.models_ok, result.summary()
        copies = {}
        for mode in MODES:
            copy = _create(admin_db, shaped.dbname)
            made.append(copy)
            start(copy, mode)
            copies[mode] = copy.dbname
        yield copies
    finally:
        for database in made:
            _drop(admin_db, database.dbname)


@dataclass(frozen=True)
class Batches:
    """Two healthy finished batches (state COMPLETED, completed pairs, projections, events);
    `broken` is the one a case breaks."""

    broken: int
    other: int
    broken_bos: str
    other_bos: str


def _batches(database: Database) -> Batches:
    with connect(database) as conn:
        rows = conn.execute(
            "select u.id, u.bos_batch_id from cj_batch_uploads u"
            " join cj_batch_states s on s.batch_id = u.id"
            " where s.state = 'COMPLETED'"
            " and exists (select from cj_comparison_pairs p"
            "   where p.cj_batch_id = u.id and p.winner in ('essay_a', 'essay_b'))"
            " and exists (select from grade_projections g where g.cj_batch_id = u.id)"
            " and exists (select from event_outbox e where e.aggregate_id = u.bos_batch_id)"
            " order by u.id"
        ).fetchall()
    views = health(database)
    healthy = [(batch, bos) for batch, bos in rows if not views[batch]["issues"]]
    assert len(healthy) >= 2, rows
    (broken, broken_bos), (other, other_bos) = healthy[:2]
    return Batches(broken, other, broken_bos, other_bos)


def _write(database: Database, statement: str, params: dict | None = None) -> None:
    with connect(database) as conn:
        conn.execute(statement, params)
        conn.commit()


def _install(database: Database) -> None:
    with connect(database, autocommit=True) as conn:
        change_feed.install(conn)


def _remove(database: Database) -> None:
    with connect(database, autocommit=True) as conn:
        change_feed.remove(conn)


# --- the cases: each breaks `batches.broken` and returns the code it must show (or None) ---


def _statement(statement: str, code: str | None) -> Callable[[Database, Batches, str], str | None]:
    """A case that is one statement (parameters from Batches) and the code it must show."""

    def case(database: Database, batches: Batches, mode: str) -> str | None:
        _write(database, statement, batches.__dict__)
        return code

    return case


def _install_then_truncate(database: Database, batches: Batches, mode: str) -> str:
    _install(database)  # with the feed: a reinstall
    _write(database, "truncate event_outbox")
    return "EVENTS_MISSING"


def _feed_gap(database: Database, batches: Batches, mode: str) -> str:
    delete = "delete from grade_projections where cj_batch_id = %(broken)s"
    if mode == FEED:
        _remove(database)
        _write(database, delete, batches.__dict__)
        _install(database)
    else:
        _install(database)
        _write(database, "update cj_batch_states set total_budget = 9 where batch_id = %s",
               (batches.other,))
        _remove(database)
        _write(database, delete, batches.__dict__)
    return "MISSING_PROJECTIONS"


CASES: dict[str, Callable[[Database, Batches, str], str | None]] = {
    # the old batch's pair counts no longer match its state's counters
    "1 pair moved to another batch": _statement(
        "update cj_comparison_pairs set cj_batch_id = %(other)s where id = (select min(id)"
        " from cj_comparison_pairs where cj_batch_id = %(broken)s"
        " and winner in ('essay_a', 'essay_b'))",
        "COUNTER_MISMATCH",
    ),
    # the old batch keeps the essay's projection
    "1 essay moved to another batch": _statement(
        "update cj_processed_essays set cj_batch_id = %(other)s where els_essay_id = (select"
        " min(els_essay_id) from grade_projections where cj_batch_id = %(broken)s)",
        "MISATTRIBUTED_PROJECTION",
    ),
    "1 outbox row moved to another aggregate": _statement(
        "update event_outbox set aggregate_id = %(other_bos)s"
        " where aggregate_id = %(broken_bos)s",
        "EVENTS_MISSING",
    ),
    "2 truncate event_outbox": _statement("truncate event_outbox", "EVENTS_MISSING"),
    "2 truncate assessment_instructions": _statement("truncate assessment_instructions", None),
    "3 feed installed, then truncate event_outbox": _install_then_truncate,
    "4 feed removed, a write, feed installed": _feed_gap,
}


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def copy(templates: dict[str, str], mode: str, make_database) -> Database:
    return make_database(templates[mode])


def _refresh_is_exact(database: Database, batches: Batches, code: str | None) -> FactsUpdate:
    """One refresh: stored = live, the view as a full refresh gives it, `code` shown."""
    facts = refresh(database).facts
    assert stored_difference(database) == (0, 0), facts.summary()
    after = health(database)
    if code is not None:
        assert code in after[batches.broken]["issues"], (facts.summary(), after[batches.broken])
    assert refresh(database).facts.written == 0  # a second refresh finds nothing to change
    assert health(database).keys() == after.keys()
    full = refresh(database, full=True).facts
    assert full.written == 0, f"{facts.summary()}\nthen a full refresh: {full.summary()}"
    return facts


@pytest.mark.parametrize("case", list(CASES))
def test_one_refresh_after_the_change_is_exact(
    copy: Database, mode: str, case: str
) -> None:
    batches = _batches(copy)
    code = CASES[case](copy, batches, mode)
    facts = _refresh_is_exact(copy, batches, code)
    if case.startswith(("3 ", "4 ")):
        # the feed changed since the last refresh: not taken alone, and (when it is
        # installed) the refresh says why
        assert facts.found_by != "change feed", facts.summary()
        with connect(copy) as conn:
            assert bool(facts.feed_note) == change_feed.inspect(conn).installed


def _deleted_counter(conn: psycopg.Connection) -> int:
    """grade_projections' deletes as pg_stat_user_tables counts them now."""
    conn.execute("select pg_stat_clear_snapshot()")
    return int(
        conn.execute(
            "select n_tup_del from pg_stat_user_tables where relname = 'grade_projections'"
        ).fetchone()[0]
    )


def test_a_delete_the_statistics_have_not_counted_yet(copy: Database, mode: str) -> None:
    """5: PostgreSQL counts a session's deletes when the session goes idle; this session
    commits the delete and opens its next transaction at once (one query string), so it
    never goes idle while the refresh runs."""
    batches = _batches(copy)
    with connect(copy, autocommit=True) as watcher, connect(copy, autocommit=True) as session:
        before = _deleted_counter(watcher)
        session.execute(
            sql.SQL(
                "begin; delete from grade_projections where cj_batch_id = {};"
                " commit; begin; select 1"
            ).format(sql.Literal(batches.broken))
        )
        facts = refresh(copy).facts
        assert _deleted_counter(watcher) == before  # not counted yet
        assert stored_difference(copy) == (0, 0), facts.summary()
        assert "MISSING_PROJECTIONS" in health(copy)[batches.broken]["issues"]
        session.execute("rollback")
    if mode == NO_FEED:
        assert (facts.mode, facts.found_by) == ("incremental", "service tables")
        assert batches.broken in facts.batch_ids
