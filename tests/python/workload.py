"""A seeded random workload on a production-shaped CJ database: the changes the service
makes (and the faults it has made), for the tests of the incremental refresh."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

import psycopg
from production_shapes import load_production_shapes

from cj_health.build import build
from cj_health.db import Database, connect

# Changes the service makes.
WRITES = ("state", "pair", "flag", "essay", "upload", "event", "projection", "copy")
DELETES = ("delete_batch", "delete_projection", "delete_event")
# A row of the first batch filed under the second (an outbox row: under its aggregate).
MOVE_STATEMENTS = {
    "move_pair": "update cj_comparison_pairs set cj_batch_id = %s where id ="
    " (select min(id) from cj_comparison_pairs where cj_batch_id = %s)",
    "move_essay": "update cj_processed_essays set cj_batch_id = %s where els_essay_id ="
    " (select min(els_essay_id) from cj_processed_essays where cj_batch_id = %s)",
    "move_event": "update event_outbox set aggregate_id = (select bos_batch_id from"
    " cj_batch_uploads where id = %s) where id = (select e.id from event_outbox e"
    " join cj_batch_uploads u on e.aggregate_id = u.bos_batch_id where u.id = %s"
    " order by e.id limit 1)",
}
MOVES = tuple(MOVE_STATEMENTS)


def copy_batch(conn: psycopg.Connection, source: int) -> int:
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
        " from cj_comparison_pairs p where cj_batch_id = %s and not exists (select from"
        " cj_processed_essays e where e.els_essay_id in (p.essay_a_els_id, p.essay_b_els_id)"
        " and e.cj_batch_id <> p.cj_batch_id)",
        (new_id, suffix, suffix, source),
    )
    conn.execute(
        "insert into grade_projections (els_essay_id, cj_batch_id, primary_grade,"
        " confidence_score, confidence_label, calculation_metadata, created_at, grade_scale)"
        " select left(els_essay_id, 29) || %s, %s, primary_grade, confidence_score,"
        " confidence_label, calculation_metadata, created_at, grade_scale"
        " from grade_projections g where cj_batch_id = %s and exists (select from"
        " cj_processed_essays e where e.els_essay_id = g.els_essay_id"
        " and e.cj_batch_id = g.cj_batch_id)",
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


def pick(conn: psycopg.Connection, rng: random.Random, query: str, params=()) -> tuple | None:
    rows = conn.execute(query, params).fetchall()
    return rng.choice(rows) if rows else None


def operation(conn: psycopg.Connection, rng: random.Random, kinds: Sequence[str]) -> set[int]:
    """One random change of one of `kinds` as the service (or a fault) makes it, in the
    caller's transaction; returns the batches whose facts it may change."""
    batches = [row[0] for row in conn.execute("select id from cj_batch_uploads")]
    batch = rng.choice(batches)
    other = rng.choice(batches)
    kind = rng.choice(kinds)
    if kind == "state":
        conn.execute(
            "update cj_batch_states set state = %s::cj_batch_state_enum,"
            " last_activity_at = now() - interval '1 minute' * %s where batch_id = %s",
            (rng.choice(["WAITING_CALLBACKS", "SCORING", "COMPLETED", "FAILED"]),
             rng.uniform(0, 600), batch),
        )
    elif kind == "pair":
        pair = pick(conn, rng, "select id from cj_comparison_pairs where cj_batch_id = %s",
                     (batch,))
        if pair is None:
            return set()
        conn.execute(
            "update cj_comparison_pairs set winner = %s, completed_at = case when %s then null"
            " else now() end where id = %s",
            (rng.choice(["essay_a", "essay_b", "error", None]), rng.random() < 0.3, pair[0]),
        )
    elif kind == "flag":  # no timestamp moves: the anchor flag lost, as in Batch 20
        essay = pick(conn, rng, "select els_essay_id from cj_processed_essays"
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
        event = pick(conn, rng, "select e.id from event_outbox e join cj_batch_uploads u"
                      " on e.aggregate_id in (u.bos_batch_id, u.id::text) where u.id = %s",
                      (batch,))
        if event is None:
            return set()
        conn.execute("update event_outbox set published_at = null, retry_count = %s,"
                     " created_at = now() - interval '1 hour' where id = %s",
                     (rng.choice([0, 5]), event[0]))
    elif kind == "projection":
        student = pick(
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
        return {copy_batch(conn, batch)}
    elif kind == "delete_batch":
        conn.execute("delete from grade_projections where cj_batch_id = %s", (batch,))
        conn.execute("delete from cj_batch_uploads where id = %s", (batch,))
    elif kind == "delete_projection":
        conn.execute(
            "delete from grade_projections where ctid = (select ctid from grade_projections"
            " where cj_batch_id = %s limit 1)", (batch,))
    elif kind == "delete_event":
        conn.execute(
            "delete from event_outbox where id = (select e.id from event_outbox e"
            " join cj_batch_uploads u on e.aggregate_id in (u.bos_batch_id, u.id::text)"
            " where u.id = %s limit 1)", (batch,))
    elif kind in MOVE_STATEMENTS:  # a row filed under another batch: both batches change
        moved = conn.execute(MOVE_STATEMENTS[kind], (other, batch)).rowcount
        return {batch, other} if moved else set()
    return {batch}


def shaped_and_built(database: Database, copies: int) -> None:
    """Production shapes, each copied `copies` times, and the monitoring built."""
    shapes = load_production_shapes(database)
    with connect(database) as conn:
        for _ in range(copies):
            for source in shapes.values():
                copy_batch(conn, source)
        conn.commit()
    result = build(database)
    assert result.models_ok, result.summary()
