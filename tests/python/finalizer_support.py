"""Running python_fix as the service runs it, on either driver: a session provider per call
(asyncpg, the service's driver, or psycopg), the finalizer built from production's eight
keyword arguments (`python_fix.default_collaborators`), production's methods called with
production's arguments.

Every connection gets a lock_timeout: a lock the finalizer must never wait for (its projector
blocked by its own locks, say) fails the test instead of hanging it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cj_health.db import Database, connect
from cj_health.service_adapter import build_finalizer, run_with_sessions

DRIVERS = ("asyncpg", "psycopg")
LOCK_TIMEOUT = {"lock_timeout": "60s"}
APPLICATION = "cj-finalizer"


def run(database: Database, work: Callable[[Any], Awaitable[Any]], driver: str) -> Any:
    return run_with_sessions(database.url, work, driver=driver, server_settings=LOCK_TIMEOUT)


def call_finalizer(
    database: Database,
    driver: str,
    method: str,
    batch_id: int,
    *,
    correlation_id: uuid.UUID | None = None,
    log_extra: dict | None = None,
    step_hook: Callable[[str], None] | None = None,
    options: dict | None = None,
    **kwargs: Any,
) -> Any:
    """`BatchFinalizer(session_provider=p, **default_collaborators(p)).<method>(batch_id,
    correlation_id, log_extra, **kwargs)` on a fresh event loop; returns what it returns."""

    async def work(provider: Any) -> Any:
        finalizer = build_finalizer(provider, **(options or {}))
        finalizer.step_hook = step_hook
        return await getattr(finalizer, method)(
            batch_id, correlation_id or uuid.uuid4(), log_extra or {}, **kwargs
        )

    return run(database, work, driver)


def batch_facts(database: Database, cj_batch_id: int) -> dict:
    """What a finalization may have written for the batch."""
    with connect(database) as conn:
        row = conn.execute(
            "select u.status::text, s.state::text, u.completed_at is not null, "
            "(select count(*) from grade_projections where cj_batch_id = u.id), "
            "(select count(*) from event_outbox "
            " where aggregate_id in (u.bos_batch_id, u.id::text)), "
            "(select count(*) from cj_processed_essays where cj_batch_id = u.id "
            " and current_bt_score is not null) "
            "from cj_batch_uploads u join cj_batch_states s on s.batch_id = u.id "
            "where u.id = %s",
            (cj_batch_id,),
        ).fetchone()
    keys = ("status", "state", "completed_at_set", "projections", "events", "scored_essays")
    return dict(zip(keys, row, strict=True))


def assert_never_half_finished(facts: dict, students: int) -> None:
    """A batch that looks finished (COMPLETE_* status or COMPLETED state) has everything:
    completed_at, a projection per student and its three events."""
    if facts["status"].startswith("COMPLETE") or facts["state"] == "COMPLETED":
        assert (facts["status"], facts["state"]) == ("COMPLETE_STABLE", "COMPLETED"), facts
        assert facts["completed_at_set"], facts
        assert (facts["projections"], facts["events"]) == (students, 3), facts


def waiting_finalizers(database: Database) -> int:
    with connect(database) as conn:
        return conn.execute(
            "select count(*) from pg_stat_activity where datname = current_database() "
            "and application_name = %s and wait_event_type = 'Lock'",
            (APPLICATION,),
        ).fetchone()[0]


driver_params = pytest.mark.parametrize("driver", DRIVERS)
