"""The refresh stays exact through what a shared test server must not be put through: a
crash (`pg_ctl stop -m immediate`, after which PostgreSQL resets its statistics), and a
random interleaving of every kind of write, prepared transactions included.

On a throwaway server of the version under test (tests/python/throwaway_server.py), a
production-shaped database (production's schema, one batch per production shape, copied),
built once and copied for each test; each test runs without and with the change feed
(refresh_support.start).

- A delete committed by a session that has not gone idle, so its statistics were never
  sent, then a crash: pg_stat_user_tables has the same delete count as before the delete
  (asserted: a refresh that relied on it could not tell), and one refresh after the restart
  shows the batch's missing projections, the stored facts equal to a full recomputation.
- A seeded random interleaving of: short transactions that insert, update, move rows to
  another batch or delete them (tests/python/workload.py); transactions with savepoints
  rolled back and released; long transactions left open across refreshes and later committed
  or rolled back; prepared transactions committed or rolled back later (also after a crash);
  truncates; the feed installed and removed; crashes; and refreshes. After every refresh the
  stored facts equal int_batch_facts as the same committed data gives it (nothing commits
  between the refresh and the comparison); at the end everything is committed, and one
  refresh leaves them equal.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
from conftest import _create
from refresh_support import MODES, health, start, stored_difference
from throwaway_server import ThrowawayServer, throwaway_server
from workload import DELETES, MOVES, WRITES, operation, shaped_and_built

from cj_health import change_feed
from cj_health.build import refresh
from cj_health.db import Database, connect

COPIES = 1  # each production shape is copied this many times before the tests
STEPS = 60
# A session's wait for a row another (open or prepared) transaction holds: then its
# operation is given up, never waited for (the test runs every session in one thread).
WORKER_LOCK_TIMEOUT = "200ms"


@pytest.fixture(scope="module")
def server(admin_db: Database) -> Iterator[ThrowawayServer]:
    with throwaway_server(admin_db) as made:
        yield made


@pytest.fixture(scope="module")
def template(server: ThrowawayServer) -> str:
    database = _create(server.admin)
    shaped_and_built(database, COPIES)
    return database.dbname


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database(server: ThrowawayServer, template: str, mode: str) -> Database:
    copy = _create(server.admin, template)
    start(copy, mode)
    return copy


def _deletes_counted(database: Database) -> int:
    with connect(database) as conn:
        return int(
            conn.execute(
                "select n_tup_del from pg_stat_user_tables where relname = 'grade_projections'"
            ).fetchone()[0]
        )


def test_a_delete_is_found_after_a_crash(server: ThrowawayServer, database: Database) -> None:
    server.crash_and_restart()  # the statistics start from nothing
    refresh(database)
    (batch,) = _one(database, "select min(cj_batch_id) from grade_projections")
    counted = _deletes_counted(database)
    session = connect(database, autocommit=True)
    # One query string: the session never goes idle after the commit, so it never sends the
    # delete to the statistics system before the crash (which cuts it off).
    session.execute(
        f"begin; delete from grade_projections where cj_batch_id = {int(batch)};"
        " commit; begin; select 1"
    )
    server.crash_and_restart()
    session.close()
    assert _deletes_counted(database) == counted  # the statistics never saw the delete
    facts = refresh(database).facts
    assert stored_difference(database) == (0, 0), facts.summary()
    assert "MISSING_PROJECTIONS" in health(database)[batch]["issues"]


def _one(database: Database, query: str) -> tuple:
    with connect(database) as conn:
        return conn.execute(query).fetchone()


@dataclass
class Interleaving:
    """The random run's state: its sessions, and what it did (printed on a failure)."""

    server: ThrowawayServer
    database: Database
    rng: random.Random
    open: list[psycopg.Connection] = field(default_factory=list)
    prepared: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    done: dict[str, int] = field(default_factory=dict)

    def session(self) -> psycopg.Connection:
        conn = connect(self.database)
        conn.execute(f"set lock_timeout = '{WORKER_LOCK_TIMEOUT}'")
        return conn

    def write(self, conn: psycopg.Connection) -> bool:
        """One random operation in `conn`'s transaction; False (and the transaction rolled
        back) when it had to wait for another transaction's rows."""
        try:
            operation(conn, self.rng, WRITES + MOVES + DELETES)
            return True
        except (psycopg.errors.LockNotAvailable, psycopg.errors.ForeignKeyViolation):
            conn.rollback()
            return False

    def note(self, what: str) -> None:
        self.log.append(what)
        kind = what.split(":")[0]
        self.done[kind] = self.done.get(kind, 0) + 1

    def step(self, kind: str) -> None:
        getattr(self, "_" + kind)()

    def _write(self) -> None:
        with self.session() as conn:
            if self.write(conn):
                conn.commit()
                self.note("write")

    def _savepoints(self) -> None:
        with self.session() as conn:
            if not self.write(conn):
                return
            conn.execute("savepoint s")
            if not self.write(conn):
                return
            undo = self.rng.random() < 0.5
            conn.execute("rollback to savepoint s" if undo else "release savepoint s")
            if self.write(conn):
                conn.commit()
                self.note(f"savepoints: {'rolled back' if undo else 'released'}")

    def _open(self) -> None:
        conn = self.session()
        if self.write(conn):
            self.open.append(conn)
            self.note("open")
        else:
            conn.close()

    def _close(self) -> None:
        if not self.open:
            return
        conn = self.open.pop(self.rng.randrange(len(self.open)))
        commit = self.rng.random() < 0.7
        (conn.commit if commit else conn.rollback)()
        conn.close()
        self.note(f"close: {'commit' if commit else 'rollback'}")

    def _prepare(self) -> None:
        with self.session() as conn:
            if self.write(conn):
                gid = f"cj_{len(self.log)}"
                conn.execute(f"prepare transaction '{gid}'")
                self.prepared.append(gid)
                self.note("prepare")

    def _finish_prepared(self) -> None:
        if not self.prepared:
            return
        gid = self.prepared.pop(self.rng.randrange(len(self.prepared)))
        commit = self.rng.random() < 0.7
        with connect(self.database, autocommit=True) as conn:
            conn.execute(f"{'commit' if commit else 'rollback'} prepared '{gid}'")
        self.note(f"finish_prepared: {'commit' if commit else 'rollback'}")

    def _truncate(self) -> None:
        table = self.rng.choice(["event_outbox", "assessment_instructions"])
        with self.session() as conn:
            try:
                conn.execute(f"truncate {table}")
                conn.commit()
                self.note(f"truncate: {table}")
            except psycopg.errors.LockNotAvailable:
                conn.rollback()

    def _feed(self) -> None:
        # Installing waits for the tables' locks: the open and prepared transactions end.
        while self.open:
            self._close()
        while self.prepared:
            self._finish_prepared()
        with connect(self.database, autocommit=True) as conn:
            if change_feed.inspect(conn).installed:
                change_feed.remove(conn)
                self.note("feed: removed")
            else:
                change_feed.install(conn)
                self.note("feed: installed")

    def _crash(self) -> None:
        self.server.crash_and_restart()
        for conn in self.open:  # their transactions died with the server
            conn.close()
        self.open.clear()
        self.note("crash")

    def _refresh(self) -> None:
        facts = refresh(self.database).facts
        self.note(f"refresh: {facts.summary()}")
        difference = stored_difference(self.database)
        assert difference == (0, 0), "\n".join(self.log)

    def finish(self) -> None:
        for conn in self.open:
            conn.commit()
            conn.close()
        self.open.clear()
        with connect(self.database, autocommit=True) as conn:
            for gid in self.prepared:
                conn.execute(f"commit prepared '{gid}'")
        self.prepared.clear()
        self.note("finish")


# How often each step is drawn.
STEP_WEIGHTS = {
    "write": 6, "savepoints": 2, "open": 2, "close": 2, "prepare": 1.5,
    "finish_prepared": 1.5, "truncate": 0.4, "feed": 1, "crash": 0.6, "refresh": 4,
}
SEEDS = {"no feed": 23, "feed": 31}


def test_a_random_interleaving_ends_exact(
    server: ThrowawayServer, database: Database, mode: str
) -> None:
    run = Interleaving(server, database, random.Random(SEEDS[mode]))
    kinds, weights = zip(*STEP_WEIGHTS.items(), strict=True)
    try:
        for _ in range(STEPS):
            run.step(run.rng.choices(kinds, weights)[0])
        run.finish()
        run._refresh()
    finally:
        for conn in run.open:
            conn.close()
    # The run did what it is for (the seeds are fixed; this guards a change of weights).
    for kind in ("write", "savepoints", "open", "close", "prepare", "finish_prepared",
                 "feed", "crash", "refresh"):
        assert run.done.get(kind), f"no {kind} in the run:\n" + "\n".join(run.log)
