"""The change feed (cj_health.change_feed): the triggers record every batch a service write
touches, and a refresh that trusts them stays equal to a full rebuild.

On production's head schema with one batch per production shape, built once per test:
- install is one idempotent transaction and `remove` leaves nothing behind;
- a statement touching several batches records each of them; an essay moved to another
  batch records both batches; a delete records the batch it deleted from;
- the triggers fire also with `session_replication_role = replica` (a restore, a logical
  replication apply);
- an anchor reference change or a truncate makes the next refresh rebuild every batch;
- with one trigger disabled the feed is incomplete: `change-feed status` exits 1 and the
  refresh reads the service tables again (every batch, since the fingerprints it would
  compare with are from before the feed), finding the write the feed missed;
- with the queue dropped by hand, service writes still succeed and the refresh falls back
  the same way;
- installing on a schema that is not the service's fails in one line and leaves nothing.

The harm the feed must never do to service writes is tested in test_feed_harmless.py, the
refresh's exactness around installs and removals in test_refresh_exactness.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import _create, _drop
from production_shapes import load_production_shapes
from psycopg import sql
from refresh_support import stored_difference

from cj_health import change_feed
from cj_health.build import build, refresh
from cj_health.db import Database, connect
from cj_health.paths import project_dir
from cj_health.status import load_status


@pytest.fixture(scope="module")
def fed_template(admin_db: Database) -> Iterator[str]:
    """Production shapes, built, the feed installed, and the refresh that starts trusting it;
    each test gets a copy (CREATE DATABASE ... TEMPLATE)."""
    template = _create(admin_db)
    try:
        load_production_shapes(template)
        result = build(template)
        assert result.models_ok, result.summary()
        with connect(template, autocommit=True) as conn:
            assert change_feed.install(conn).complete
        assert refresh(template).facts.mode == "full"  # the first refresh after a build
        # the first refresh after the install read the service tables; this one trusts it
        assert refresh(template).facts.found_by == "change feed"
        yield template.dbname
    finally:
        _drop(admin_db, template.dbname)


@pytest.fixture
def fed(make_database, fed_template: str) -> Database:
    return make_database(fed_template)


def _two_batches(conn: psycopg.Connection) -> tuple[int, int]:
    first, second = (
        row[0]
        for row in conn.execute(
            "select batch_id from cj_batch_states order by batch_id limit 2"
        ).fetchall()
    )
    return first, second


def _stored_equals_full(database: Database) -> bool:
    return stored_difference(database) == (0, 0)


def _feed_objects(conn: psycopg.Connection) -> tuple[int, int, bool]:
    """(feed triggers on the service tables, feed functions, queue exists)."""
    (triggers,) = conn.execute(
        "select count(*) from pg_catalog.pg_trigger where tgname like %s",
        (change_feed.TRIGGER_PREFIX + "%",),
    ).fetchone()
    (functions,) = conn.execute(
        "select count(*) from pg_catalog.pg_proc where proname like %s",
        (change_feed.FUNCTION_PREFIX + "%",),
    ).fetchone()
    queue = conn.execute(
        "select to_regclass(%s) is not null",
        (f"{change_feed.feed_schema()}.{change_feed.QUEUE_TABLE}",),
    ).fetchone()[0]
    return int(triggers), int(functions), bool(queue)


def test_install_is_idempotent_and_remove_leaves_nothing(fed: Database) -> None:
    expected_triggers = len(change_feed.FED_TABLES) * len(change_feed.EVENTS)
    with connect(fed, autocommit=True) as conn:
        assert _feed_objects(conn) == (expected_triggers, len(change_feed.FED_TABLES), True)
        assert change_feed.install(conn).complete  # a second install changes nothing
        assert _feed_objects(conn) == (expected_triggers, len(change_feed.FED_TABLES), True)
        change_feed.remove(conn)
        assert _feed_objects(conn) == (0, 0, False)
        assert not change_feed.inspect(conn).installed
    # Without the feed the refresh reads the service tables: once every batch (the row
    # fingerprints are from before the feed), then the changed ones, as before it was
    # installed.
    assert refresh(fed).facts.mode == "full"
    with connect(fed) as conn:
        batch, _ = _two_batches(conn)
        conn.execute("update cj_batch_states set total_budget = 7 where batch_id = %s", (batch,))
        conn.commit()
    facts = refresh(fed).facts
    assert (facts.mode, facts.found_by) == ("incremental", "service tables")
    assert facts.batch_ids == (batch,)


def test_every_touched_batch_is_recorded_and_recomputed(fed: Database) -> None:
    with connect(fed) as conn:
        first, second = _two_batches(conn)
        # One statement, two batches.
        conn.execute(
            "update cj_batch_states set last_activity_at = now() where batch_id = any(%s)",
            ([first, second],),
        )
        conn.commit()
    facts = refresh(fed).facts
    assert (facts.mode, facts.found_by) == ("incremental", "change feed")
    assert set(facts.batch_ids) == {first, second}

    with connect(fed) as conn:
        # An essay filed under another batch changes both batches' facts.
        essay, first = conn.execute(
            "select els_essay_id, cj_batch_id from cj_processed_essays e"
            " where not exists (select from grade_projections g"
            "   where g.els_essay_id = e.els_essay_id)"
            " and not exists (select from cj_comparison_pairs p"
            "   where p.essay_a_els_id = e.els_essay_id or p.essay_b_els_id = e.els_essay_id)"
            " order by els_essay_id limit 1"
        ).fetchone()
        (second,) = conn.execute(
            "select min(batch_id) from cj_batch_states where batch_id <> %s", (first,)
        ).fetchone()
        conn.execute(
            "update cj_processed_essays set cj_batch_id = %s where els_essay_id = %s",
            (second, essay),
        )
        conn.commit()
    facts = refresh(fed).facts
    assert set(facts.batch_ids) == {first, second}
    assert facts.written >= 2  # both batches' essay counts changed
    assert _stored_equals_full(fed)

    with connect(fed) as conn:
        (deleted,) = conn.execute(
            "delete from grade_projections where cj_batch_id in"
            " (select cj_batch_id from grade_projections limit 1) returning cj_batch_id"
        ).fetchone()
        conn.commit()
    facts = refresh(fed).facts
    assert (facts.mode, facts.found_by) == ("incremental", "change feed")
    assert deleted in facts.batch_ids
    assert _stored_equals_full(fed)


def test_the_triggers_fire_for_replication_sessions(fed: Database) -> None:
    with connect(fed) as conn:
        batch, _ = _two_batches(conn)
        conn.execute("set session_replication_role = replica")
        conn.execute("update cj_batch_states set total_budget = 11 where batch_id = %s", (batch,))
        conn.commit()
    facts = refresh(fed).facts
    assert (facts.found_by, facts.batch_ids) == ("change feed", (batch,))
    assert _stored_equals_full(fed)


@pytest.mark.parametrize(
    "statement",
    [
        "update anchor_essay_references set grade = grade",
        "truncate event_outbox",
    ],
)
def test_shared_changes_and_truncates_rebuild_every_batch(fed: Database, statement: str) -> None:
    with connect(fed) as conn:
        conn.execute(statement)
        conn.commit()
    facts = refresh(fed).facts
    assert facts.mode == "full", facts.summary()
    assert _stored_equals_full(fed)
    # The next refresh trusts the feed again.
    assert refresh(fed).facts.found_by == "change feed"


def _feed_command(
    database: Database, action: str, **env: str
) -> subprocess.CompletedProcess:
    command = Path(sys.executable).with_name("cj-health")
    return subprocess.run(
        [str(command), "change-feed", action],
        env={"CJ_DATABASE_URL": database.url, "PATH": "/usr/bin:/bin", **env},
        cwd=project_dir(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _status_command(database: Database) -> subprocess.CompletedProcess:
    return _feed_command(database, "status")


def test_install_on_a_wrong_schema_is_one_line_and_changes_nothing(cj_db: Database) -> None:
    proc = _feed_command(cj_db, "install", CJ_SOURCE_SCHEMA="not_the_service")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "CJ_SOURCE_SCHEMA" in proc.stderr and "nothing was changed" in proc.stderr
    with connect(cj_db) as conn:
        assert _feed_objects(conn) == (0, 0, False)


def test_an_incomplete_feed_is_reported_and_not_trusted(fed: Database) -> None:
    assert _status_command(fed).returncode == 0
    with connect(fed) as conn:
        batch, _ = _two_batches(conn)
        conn.execute(
            sql.SQL("alter table cj_comparison_pairs disable trigger {}").format(
                sql.Identifier(change_feed.TRIGGER_PREFIX + "update")
            )
        )
        # Written while the trigger is off: only reading the service tables finds it.
        conn.execute(
            "update cj_comparison_pairs set winner = 'error' where id ="
            " (select min(id) from cj_comparison_pairs where cj_batch_id = %s)",
            (batch,),
        )
        conn.commit()
    status = _status_command(fed)
    assert status.returncode == 1, status.stdout + status.stderr
    assert "INCOMPLETE" in status.stdout and "cj_comparison_pairs: update" in status.stdout
    # `cj-health status` shows it, and does not alert for it: the refresh falls back.
    report = load_status(fed)
    assert report.change_feed.startswith("change feed: INCOMPLETE")
    assert not any("feed" in problem for problem in report.problems)
    facts = refresh(fed).facts
    # The fingerprints it would compare with are from before the feed: every batch.
    assert facts.mode == "full", facts.summary()
    assert "cj_comparison_pairs: update" in facts.feed_note
    assert _stored_equals_full(fed)
    # `status` says why the refresh did not use the feed.
    assert "cj_comparison_pairs: update" in load_status(fed).change_feed
    # Still incomplete: the next refresh compares the fingerprints, and finds the next write.
    with connect(fed) as conn:
        conn.execute(
            "update cj_comparison_pairs set winner = null where id ="
            " (select min(id) from cj_comparison_pairs where cj_batch_id = %s)",
            (batch,),
        )
        conn.commit()
    facts = refresh(fed).facts
    assert (facts.mode, facts.found_by, facts.batch_ids) == (
        "incremental", "service tables", (batch,)
    ), facts.summary()
    assert _stored_equals_full(fed)


def test_a_dropped_queue_never_fails_a_service_write(fed: Database) -> None:
    with connect(fed) as conn:
        batch, _ = _two_batches(conn)
        conn.execute(
            sql.SQL("drop table {}").format(
                sql.Identifier(change_feed.feed_schema(), change_feed.QUEUE_TABLE)
            )
        )
        conn.commit()
        # The service's writes, every event of a fed table.
        conn.execute("update cj_batch_states set total_budget = 5 where batch_id = %s", (batch,))
        conn.execute("delete from grade_projections where cj_batch_id = %s", (batch,))
        conn.execute(
            "insert into assessment_instructions (course_id, instructions_text, grade_scale)"
            " values ('NEW1', 'course instructions', 'swedish_8_anchor')"
        )
        conn.commit()
        assert not change_feed.inspect(conn).complete
    facts = refresh(fed).facts
    assert facts.mode == "full", facts.summary()  # the fingerprints were from before the feed
    assert "gone" in facts.feed_note
    assert _stored_equals_full(fed)
