"""The change feed never harms a service write, whatever happened to its schema, queue or
grants, and a write it could not record is never lost to the refresh.

On the three-role deployment of docs/runbook.md (tests/python/deployment.py), one copy per
test: something breaks the feed (its owner's USAGE on the feed's schema or INSERT on the
queue revoked, the queue dropped, renamed, given a constraint, or locked by another
session), then the service writes as it does (updates, a pair reset, a delete) in one
transaction with `lock_timeout = 50ms`: any lock wait of a trigger longer than that would
fail the write, so "the write succeeds" is the behavioural bound, with no clock read. The
session's own lock_timeout is still 50ms afterwards. Then one refresh as the monitoring
role: it does not trust the feed, says why, and leaves the stored facts equal to a full
recomputation.

Also: a revoke and a grant back between two refreshes still stop the next refresh from
trusting the feed; a service transaction of many statements gives no subtransaction a
transaction id (healthy, or counting losses); with the queue locked and the loss counter
held by an uncommitted ALTER SEQUENCE, the write still succeeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from deployment import (
    MONITOR,
    OWNER,
    SERVICE,
    Deployment,
    copy_database,
    deploy_as_runbook_says,
    three_roles,
)
from psycopg import sql
from refresh_support import stored_difference

from cj_health import change_feed
from cj_health.build import refresh
from cj_health.db import Database, connect
from cj_health.status import load_status

SERVICE_LOCK_TIMEOUT = "50ms"


@pytest.fixture(scope="module")
def deployed(admin_db: Database) -> Iterator[Deployment]:
    with three_roles(admin_db) as deployment:
        deploy_as_runbook_says(deployment)
        yield deployment


@dataclass(frozen=True)
class Fed:
    owner: Database
    service: Database
    monitor: Database
    owner_role: str
    monitor_role: str


_copies = iter(range(1000))


@pytest.fixture
def fed(deployed: Deployment) -> Fed:
    """A copy of the deployment, its feed trusted by the refresh."""
    name = copy_database(deployed, f"h{next(_copies)}")
    copy = Fed(
        deployed.as_role(OWNER, name),
        deployed.as_role(SERVICE, name),
        deployed.as_role(MONITOR, name),
        deployed.roles[OWNER],
        deployed.roles[MONITOR],
    )
    assert refresh(copy.monitor).facts.found_by == "change feed"
    return copy


def _queue() -> sql.Composed:
    return sql.Identifier(change_feed.feed_schema(), change_feed.QUEUE_TABLE)


def _as_owner(fed: Fed, statement: sql.Composable) -> None:
    with connect(fed.owner, autocommit=True) as conn:
        conn.execute(statement)


def _batch(fed: Fed) -> int:
    with connect(fed.service) as conn:
        return conn.execute(
            "select min(cj_batch_id) from grade_projections"
        ).fetchone()[0]


def service_writes(
    fed: Fed, batch: int, statements: int = 1, lock_timeout: str = SERVICE_LOCK_TIMEOUT
) -> None:
    """The service's writes to `batch`, in one transaction with lock_timeout 50ms: a
    trigger that waited longer on a lock would make them fail. (With lock_timeout 0, no
    limit, a statement_timeout of 5 s stops a trigger that waits: canceling is an error no
    exception block catches.)"""
    with connect(fed.service) as conn:
        conn.execute(sql.SQL("set lock_timeout = {}").format(sql.Literal(lock_timeout)))
        conn.execute("set statement_timeout = '5s'")
        for _ in range(statements):
            conn.execute(
                "update cj_batch_states set total_budget = coalesce(total_budget, 0) + 1"
                " where batch_id = %s", (batch,))
        conn.execute(
            "update cj_comparison_pairs set winner = null, completed_at = null where id ="
            " (select min(id) from cj_comparison_pairs where cj_batch_id = %s)", (batch,))
        conn.execute("delete from grade_projections where cj_batch_id = %s", (batch,))
        conn.commit()
        assert conn.execute("show lock_timeout").fetchone()[0] == lock_timeout


@contextmanager
def _held(database: Database, *statements: sql.Composable) -> Iterator[None]:
    """`statements` in a transaction of another session, held open meanwhile."""
    with connect(database) as conn:
        for statement in statements:
            conn.execute(statement)
        yield
        conn.rollback()


def _revoke_usage(fed: Fed) -> None:
    _as_owner(fed, sql.SQL("revoke usage on schema {} from {}").format(
        sql.Identifier(change_feed.feed_schema()), sql.Identifier(fed.owner_role)))


def _revoke_insert(fed: Fed) -> None:
    _as_owner(fed, sql.SQL("revoke insert on {} from {}").format(
        _queue(), sql.Identifier(fed.owner_role)))


def _drop_queue(fed: Fed) -> None:
    _as_owner(fed, sql.SQL("drop table {}").format(_queue()))


def _rename_queue(fed: Fed) -> None:
    _as_owner(fed, sql.SQL("alter table {} rename to cj_batch_changes_old").format(_queue()))


def _constrain_queue(fed: Fed) -> None:
    _as_owner(fed, sql.SQL("alter table {} add check (cj_batch_id < 0) not valid").format(
        _queue()))


BREAKAGES: dict[str, Callable[[Fed], None]] = {
    "owner's USAGE on the feed's schema revoked": _revoke_usage,
    "owner's INSERT on the queue revoked": _revoke_insert,
    "queue dropped": _drop_queue,
    "queue renamed": _rename_queue,
    "queue given a check constraint": _constrain_queue,
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_feed_never_fails_a_write_and_the_refresh_stays_exact(
    fed: Fed, breakage: str
) -> None:
    BREAKAGES[breakage](fed)
    service_writes(fed, _batch(fed))
    facts = refresh(fed.monitor).facts
    assert facts.feed_note, f"{breakage}: the refresh trusted the feed: {facts.summary()}"
    assert stored_difference(fed.monitor) == (0, 0), facts.summary()
    report = load_status(fed.monitor)
    assert report.change_feed.startswith("change feed: INCOMPLETE"), report.change_feed


def test_a_locked_queue_never_holds_a_write_and_its_loss_is_found(fed: Fed) -> None:
    batch = _batch(fed)
    # The monitoring role may lock the queue (it may delete from it): an operator's mistake.
    with _held(fed.monitor, sql.SQL("lock table {} in access exclusive mode").format(_queue())):
        service_writes(fed, batch)
        # The trigger does not wait for the lock at all (NOWAIT), not only up to the
        # writer's own lock_timeout.
        service_writes(fed, batch, lock_timeout="0")
    facts = refresh(fed.monitor).facts
    assert "could not record 6 service statements" in facts.feed_note, facts.summary()
    assert stored_difference(fed.monitor) == (0, 0)
    assert "could not record" in load_status(fed.monitor).change_feed
    # Nothing is wrong any more: the next refresh but one trusts the feed again.
    refresh(fed.monitor)
    assert refresh(fed.monitor).facts.found_by == "change feed"


def test_a_locked_queue_and_a_held_loss_counter_never_hold_a_write(fed: Fed) -> None:
    counter = sql.Identifier(change_feed.feed_schema(), change_feed.LOSS_COUNTER)
    with _held(fed.monitor, sql.SQL("lock table {} in access exclusive mode").format(_queue())), \
            _held(fed.owner, sql.SQL("alter sequence {} cache 1").format(counter)):
        service_writes(fed, _batch(fed))


def test_revoked_and_granted_back_between_two_refreshes_is_not_trusted(fed: Fed) -> None:
    _revoke_usage(fed)
    service_writes(fed, _batch(fed))
    _as_owner(fed, sql.SQL("grant usage on schema {} to {}").format(
        sql.Identifier(change_feed.feed_schema()), sql.Identifier(fed.owner_role)))
    facts = refresh(fed.monitor).facts
    assert facts.found_by != "change feed" and facts.feed_note, facts.summary()
    assert stored_difference(fed.monitor) == (0, 0)


def _xids_in_a_transaction(fed: Fed, statements: int) -> int:
    """How many transaction ids the service's transaction of `statements` statements
    consumed: the id of the next transaction after it, minus its own."""
    with connect(fed.service) as conn:
        conn.execute(sql.SQL("set lock_timeout = {}").format(sql.Literal(SERVICE_LOCK_TIMEOUT)))
        batch = _batch(fed)
        for _ in range(statements):
            conn.execute(
                "update cj_batch_states set total_budget = coalesce(total_budget, 0) + 1"
                " where batch_id = %s", (batch,))
        (own,) = conn.execute("select pg_current_xact_id()::text::bigint").fetchone()
        conn.commit()
        (after,) = conn.execute("select pg_current_xact_id()::text::bigint").fetchone()
        conn.commit()
    return after - own


@pytest.mark.parametrize("queue", ["writable", "locked"])
def test_no_subtransaction_gets_a_transaction_id(fed: Fed, queue: str) -> None:
    """More than 64 subtransactions with ids in one transaction overflow the server's
    subtransaction cache (every snapshot then reads pg_subtrans): 100 statements here would
    consume 100 ids if each trigger call opened one."""
    lock = sql.SQL("lock table {} in access exclusive mode").format(_queue())
    if queue == "locked":
        with _held(fed.monitor, lock):
            used = _xids_in_a_transaction(fed, 100)
    else:
        used = _xids_in_a_transaction(fed, 100)
    # 1: the next transaction's id follows at once; a few more if another session of the
    # server took ids meanwhile, never the 100 of one per statement.
    assert used < 50, used


def test_a_rollback_to_a_savepoint_gives_the_queue_back_without_a_wait(fed: Fed) -> None:
    """A trigger takes the queue's lock once per transaction and remembers it; a rollback
    to a savepoint releases the lock and forgets it together, so the next statement checks
    again, without waiting, while another session holds the queue."""
    batch = _batch(fed)
    update = "update cj_batch_states set total_budget = 3 where batch_id = %s"
    with connect(fed.service) as conn:
        conn.execute(sql.SQL("set lock_timeout = {}").format(sql.Literal(SERVICE_LOCK_TIMEOUT)))
        conn.execute("savepoint before_write")
        conn.execute(update, (batch,))
        conn.execute("rollback to savepoint before_write")
        lock = sql.SQL("lock table {} in access exclusive mode").format(_queue())
        with _held(fed.monitor, lock):
            conn.execute(update, (batch,))
            conn.commit()
    facts = refresh(fed.monitor).facts
    assert "could not record 1 service statements" in facts.feed_note, facts.summary()
    assert stored_difference(fed.monitor) == (0, 0)
