"""The refresh keeps the stored per-batch facts (int_batch_facts_incremental) equal to a full
rebuild, row for row, while recomputing only the batches whose rows changed.

The database is production-shaped (production's head schema and one batch per shape the
service leaves behind: guest batches, every status, both metadata shapes, three events per
finished batch), then grown by copying those batches. A seeded random workload of inserts,
updates (some without touching any timestamp, some backdating them), deletes and new or
deleted batches runs in rounds; after each round `refresh` must leave the stored facts equal
to int_batch_facts (the full computation) and cj_batch_health equal to what a full rebuild
gives. Time passing without any row changing must still change a time-based verdict.
"""

from __future__ import annotations

import random
import time
import uuid

import psycopg
import pytest
from production_shapes import load_production_shapes
from psycopg import sql

from cj_health import change_feed
from cj_health.batch_facts import FACTS_TABLE, FACTS_VIEW, facts_columns
from cj_health.build import build, refresh
from cj_health.db import Database, connect, monitoring_schema

COPIES = 3  # each production shape is copied this many times before the workload
ROUNDS = 8
OPERATIONS_PER_ROUND = 12


def _copy_batch(conn: psycopg.Connection, source: int) -> int:
    """A new batch with the rows of `source`: upload, state, essays, pairs, projections and
    its outbox events (fresh ids, the same shape)."""
    suffix = uuid.uuid4().hex[:6]
    bos = str(uuid.uuid4())
    (new_id,) = conn.execute(
        "insert into cj_batch_uploads (bos_batch_id, event_correlation_id, language,"
        " course_code, expected_essay_count, status, created_at, updated_at, completed_at,"
        " processing_metadata, assignment_id, user_id, org_id)"
        " select %s, event_correlation_id, language, course_code, expected_essay_count, status,"
        " created_at, updated_at, completed_at, processing_metadata, assignment_id, user_id,"
        " org_id from cj_batch_uploads where id = %s returning id",
        (bos, source),
    ).fetchone()
    conn.execute(
        "insert into cj_batch_states (batch_id, state, total_comparisons, submitted_comparisons,"
        " completed_comparisons, failed_comparisons, last_activity_at,"
        " partial_scoring_triggered, current_iteration, total_budget)"
        " select %s, state, total_comparisons, submitted_comparisons, completed_comparisons,"
        " failed_comparisons, last_activity_at, partial_scoring_triggered, current_iteration,"
        " total_budget from cj_batch_states where batch_id = %s",
        (new_id, source),
    )
    conn.execute(
        "insert into cj_processed_essays (els_essay_id, cj_batch_id, text_storage_id,"
        " assessment_input_text, current_bt_score, comparison_count, created_at, updated_at,"
        " processing_metadata, current_bt_se, is_anchor)"
        " select left(els_essay_id, 29) || %s, %s, text_storage_id, assessment_input_text,"
        " current_bt_score, comparison_count, created_at, updated_at, processing_metadata,"
        " current_bt_se, is_anchor from cj_processed_essays where cj_batch_id = %s",
        (suffix, new_id, source),
    )
    conn.execute(
        "insert into cj_comparison_pairs (cj_batch_id, essay_a_els_id, essay_b_els_id,"
        " prompt_text, winner, confidence, error_code, created_at, submitted_at, completed_at)"
        " select %s, left(essay_a_els_id, 29) || %s, left(essay_b_els_id, 29) || %s,"
        " prompt_text, winner, confidence, error_code, created_at, submitted_at, completed_at"
        " from cj_comparison_pairs where cj_batch_id = %s",
        (new_id, suffix, suffix, source),
    )
    conn.execute(
        "insert into grade_projections (els_essay_id, cj_batch_id, primary_grade,"
        " confidence_score, confidence_label, calculation_metadata, created_at, grade_scale)"
        " select left(els_essay_id, 29) || %s, %s, primary_grade, confidence_score,"
        " confidence_label, calculation_metadata, created_at, grade_scale"
        " from grade_projections where cj_batch_id = %s",
        (suffix, new_id, source),
    )
    conn.execute(
        "insert into event_outbox (aggregate_id, aggregate_type, event_type, event_data,"
        " event_key, topic, created_at, published_at, retry_count)"
        " select case when e.aggregate_type = 'assessment_result' then %s::text else %s end,"
        " e.aggregate_type, e.event_type, e.event_data, e.event_key, e.topic, e.created_at,"
        " e.published_at, e.retry_count from event_outbox e join cj_batch_uploads u"
        " on e.aggregate_id in (u.bos_batch_id, u.id::text) where u.id = %s",
        (str(new_id), bos, source),
    )
    return new_id


def _pick(conn: psycopg.Connection, rng: random.Random, query: str, params=()) -> tuple | None:
    rows = conn.execute(query, params).fetchall()
    return rng.choice(rows) if rows else None


def _operation(conn: psycopg.Connection, rng: random.Random, with_deletes: bool) -> set[int]:
    """One random change as the service (or a fault) makes it; returns the batches it wrote to
    (a deletion returns none: it is caught by the delete counters)."""
    batches = [row[0] for row in conn.execute("select id from cj_batch_uploads")]
    batch = rng.choice(batches)
    kinds = ["state", "pair", "flag", "essay", "upload", "event", "projection", "copy"]
    if with_deletes:
        kinds += ["delete_batch", "delete_projection", "delete_event"]
    kind = rng.choice(kinds)
    if kind == "state":
        conn.execute(
            "update cj_batch_states set state = %s::cj_batch_state_enum,"
            " last_activity_at = now() - interval '1 minute' * %s where batch_id = %s",
            (rng.choice(["WAITING_CALLBACKS", "SCORING", "COMPLETED", "FAILED"]),
             rng.uniform(0, 600), batch),
        )
    elif kind == "pair":
        pair = _pick(conn, rng, "select id from cj_comparison_pairs where cj_batch_id = %s",
                     (batch,))
        if pair is None:
            return set()
        conn.execute(
            "update cj_comparison_pairs set winner = %s, completed_at = case when %s then null"
            " else now() end where id = %s",
            (rng.choice(["essay_a", "essay_b", "error", None]), rng.random() < 0.3, pair[0]),
        )
    elif kind == "flag":  # no timestamp moves: the anchor flag lost, as in Batch 20
        essay = _pick(conn, rng, "select els_essay_id from cj_processed_essays"
                      " where cj_batch_id = %s", (batch,))
        if essay is None:
            return set()
        conn.execute("update cj_processed_essays set is_anchor = not is_anchor"
                     " where els_essay_id = %s", essay)
    elif kind == "essay":
        conn.execute(
            "insert into cj_processed_essays (els_essay_id, cj_batch_id, text_storage_id,"
            " assessment_input_text, comparison_count, processing_metadata, created_at,"
            " updated_at) values (%s, %s, 'storage', 'generated text', 0, %s::json,"
            " now() - interval '3 hours', now() - interval '3 hours')",
            (uuid.uuid4().hex, batch,
             rng.choice(['{"is_anchor": false}', '{"is_anchor": "true"}', None])),
        )
    elif kind == "upload":
        conn.execute(
            "update cj_batch_uploads set status = %s::cj_batch_status_enum,"
            " completed_at = case when %s then null else completed_at end where id = %s",
            (rng.choice(["COMPLETE_STABLE", "PERFORMING_COMPARISONS", "ERROR_PROCESSING"]),
             rng.random() < 0.5, batch),
        )
    elif kind == "event":
        event = _pick(conn, rng, "select e.id from event_outbox e join cj_batch_uploads u"
                      " on e.aggregate_id in (u.bos_batch_id, u.id::text) where u.id = %s",
                      (batch,))
        if event is None:
            return set()
        conn.execute("update event_outbox set published_at = null, retry_count = %s,"
                     " created_at = now() - interval '1 hour' where id = %s",
                     (rng.choice([0, 5]), event[0]))
    elif kind == "projection":
        student = _pick(
            conn, rng,
            "select e.els_essay_id from cj_processed_essays e where e.cj_batch_id = %s"
            " and not exists (select from grade_projections g"
            " where g.els_essay_id = e.els_essay_id)", (batch,))
        if student is None:
            return set()
        conn.execute(
            "insert into grade_projections (els_essay_id, cj_batch_id, primary_grade,"
            " confidence_score, confidence_label, calculation_metadata, grade_scale)"
            " values (%s, %s, %s, 0.8, 'HIGH', '{}', 'eng5_np_legacy_9_step')",
            (student[0], batch, rng.choice(["B", "Q"])),
        )
    elif kind == "copy":
        return {_copy_batch(conn, batch)}
    elif kind == "delete_batch":
        conn.execute("delete from grade_projections where cj_batch_id = %s", (batch,))
        conn.execute("delete from cj_batch_uploads where id = %s", (batch,))
        return set()
    elif kind == "delete_projection":
        conn.execute(
            "delete from grade_projections where ctid = (select ctid from grade_projections"
            " where cj_batch_id = %s limit 1)", (batch,))
        return set()
    elif kind == "delete_event":
        conn.execute(
            "delete from event_outbox where id = (select e.id from event_outbox e"
            " join cj_batch_uploads u on e.aggregate_id in (u.bos_batch_id, u.id::text)"
            " where u.id = %s limit 1)", (batch,))
        return set()
    return {batch}


def _workload(database: Database, rng: random.Random, with_deletes: bool) -> set[int]:
    touched: set[int] = set()
    with connect(database) as conn:
        for _ in range(OPERATIONS_PER_ROUND):
            touched |= _operation(conn, rng, with_deletes)
            conn.commit()
        # The delete counters reach the statistics system when the session goes idle; a
        # busy service session gets there within a second, the next refresh sees them.
        conn.execute("select pg_stat_force_next_flush()")
        conn.commit()
    return touched


def _facts_difference(conn: psycopg.Connection) -> tuple[int, int]:
    """(rows of the full computation missing from the stored facts, stored rows it lacks)."""
    columns = sql.SQL(", ").join(map(sql.Identifier, facts_columns(conn)))
    schema = monitoring_schema()
    view, table = sql.Identifier(schema, FACTS_VIEW), sql.Identifier(schema, FACTS_TABLE)
    missing = conn.execute(
        sql.SQL("select count(*) from (select {c} from {v} except all select {c} from {t}) d")
        .format(c=columns, v=view, t=table)).fetchone()[0]
    extra = conn.execute(
        sql.SQL("select count(*) from (select {c} from {t} except all select {c} from {v}) d")
        .format(c=columns, v=view, t=table)).fetchone()[0]
    return missing, extra


def after_rounds_batches(database: Database) -> list[int]:
    with connect(database) as conn:
        return [row[0] for row in conn.execute("select id from cj_batch_uploads")]


def _health(database: Database) -> list[tuple]:
    with connect(database) as conn:
        return conn.execute(
            sql.SQL("select * from {} order by cj_batch_id").format(
                sql.Identifier(monitoring_schema(), "cj_batch_health"))
        ).fetchall()


# How a refresh finds the changed batches: by reading the service tables (xmin), or from the
# change feed's triggers (cj_health.change_feed).
DISCOVERY = ("service tables", "change feed")


@pytest.fixture(params=DISCOVERY)
def shaped_and_built(empty_db: Database, request: pytest.FixtureRequest) -> Database:
    shapes = load_production_shapes(empty_db)
    with connect(empty_db) as conn:
        for _ in range(COPIES):
            for source in shapes.values():
                _copy_batch(conn, source)
        conn.commit()
    result = build(empty_db)
    assert result.models_ok, result.summary()
    if request.param == "change feed":
        with connect(empty_db, autocommit=True) as conn:
            assert change_feed.install(conn).complete
    refresh(empty_db)  # the first refresh after a build rebuilds every batch
    return empty_db


def _found_by(database: Database) -> str:
    with connect(database) as conn:
        return "change feed" if change_feed.status(conn).complete else "service tables"


def test_incremental_refresh_equals_a_full_rebuild(shaped_and_built: Database) -> None:
    database = shaped_and_built
    rng = random.Random(19)
    found_by = _found_by(database)
    incremental_rounds = 0
    for round_number in range(ROUNDS):
        with_deletes = round_number % 3 == 2
        touched = _workload(database, rng, with_deletes)
        result = refresh(database)
        facts = result.facts
        if facts.mode == "incremental":
            incremental_rounds += 1
            assert facts.found_by == found_by, facts.summary()
            # Every batch written to was recomputed (a batch written by a transaction not yet
            # older than every running one on the server may be recomputed again later).
            assert touched <= set(facts.batch_ids), round_number
            assert len(facts.batch_ids) < len(after_rounds_batches(database))
        else:
            # Only reading the service tables cannot tell which batch lost a row.
            assert with_deletes and found_by == "service tables", facts.summary()
        with connect(database) as conn:
            assert _facts_difference(conn) == (0, 0), f"round {round_number}: {facts.summary()}"
        after_incremental = _health(database)
        assert refresh(database, full=True).facts.mode == "full"
        assert _health(database) == after_incremental, round_number
    assert incremental_rounds >= (ROUNDS if found_by == "change feed" else ROUNDS // 2)


def test_a_refresh_without_changes_writes_nothing(
    shaped_and_built: Database,
) -> None:
    database = shaped_and_built
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
    shaped_and_built: Database,
) -> None:
    """`refresh --full` recomputes every batch but rewrites only a stored row whose facts
    differ, restores a missing one and leaves every other row as it was (same xmin)."""
    database = shaped_and_built
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
        assert _facts_difference(conn) == (0, 0)
        assert conn.execute(untouched_rows, ([changed, missing],)).fetchall() == before
    facts = refresh(database, full=True).facts
    assert (facts.written, facts.deleted) == (0, 0), facts.summary()


def test_time_passing_changes_a_verdict_without_any_row_changing(
    shaped_and_built: Database,
) -> None:
    """A batch left COMPLETE_STABLE in WAITING_CALLBACKS becomes STUCK_FINALIZATION once it
    has been idle for stuck_after_minutes (5), at a refresh that writes no stored fact."""
    database = shaped_and_built
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
        conn.execute("select pg_stat_force_next_flush()")  # the delete counted before refresh
        conn.commit()
    refresh(database)  # the deletion: the batch is recomputed (a full rebuild without the feed)
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
