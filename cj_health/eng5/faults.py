"""The fault catalogue: every known way a CJ batch has broken, as a function that breaks one.

Each fault function takes a healthy COMPLETED batch (as `cj-health eng5 execute` leaves it:
upload COMPLETE_STABLE with `completed_at`, state COMPLETED, counters equal to the pairs,
anchors flagged by column and metadata, one projection per student, its three outbox events) and
breaks it the way production broke, with plain parameterised SQL:

    fault_fn(conn, cj_batch_id) -> None            # most faults
    misattributed_projection(conn, cj_batch_id, other_batch_id) -> None

The caller owns the transaction (nothing here commits); `break_batch(database, ...)` is the
one-call form that commits. A batch that does not exist raises BatchNotFound; a batch that is
not in the shape the fault needs (e.g. no anchors to unflag) raises CjHealthError and nothing
is changed once the caller rolls back.

`FAULTS` maps each fault's name to a `Fault`: the function, the problem code that
`cj_batch_health` must show for the broken batch (docs/problem_codes.md), and a description.
The tests, the detection matrix, `cj-health eng5 replay-incident` and the demo all use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Json

from cj_health.db import Database, connect
from cj_health.errors import BatchNotFound, CjHealthError

# How long ago a wedged batch last moved: past `stuck_after_minutes` (5) and
# `scoring_timeout_minutes` (30), short of `stalled_after_minutes` (240) where that matters.
WEDGED_FOR = "60 minutes"
SCORING_FOR = "90 minutes"
STALLED_FOR = "6 hours"


# --- shared steps ------------------------------------------------------------------------


def _require_completed_batch(conn: psycopg.Connection, cj_batch_id: int) -> None:
    row = conn.execute(
        "select s.state::text from cj_batch_uploads u "
        "left join cj_batch_states s on s.batch_id = u.id where u.id = %s",
        (cj_batch_id,),
    ).fetchone()
    if row is None:
        raise BatchNotFound(f"no CJ batch with id {cj_batch_id}")
    if row[0] != "COMPLETED":
        raise CjHealthError(
            f"batch {cj_batch_id} is in state {row[0]}; a fault breaks a healthy COMPLETED batch"
        )


def _rewind_finalization(conn: psycopg.Connection, cj_batch_id: int) -> None:
    """Undo what finalization wrote: projections, outbox events, `completed_at`."""
    conn.execute("delete from grade_projections where cj_batch_id = %s", (cj_batch_id,))
    conn.execute(
        "delete from event_outbox e using cj_batch_uploads u "
        "where u.id = %s and ("
        " (e.aggregate_type in ('cj_batch', 'resource_consumption')"
        "  and e.aggregate_id = u.bos_batch_id)"
        " or (e.aggregate_type = 'assessment_result' and e.aggregate_id = u.id::text))",
        (cj_batch_id,),
    )
    conn.execute(
        "update cj_batch_uploads set completed_at = null where id = %s", (cj_batch_id,)
    )


def _set_state(
    conn: psycopg.Connection,
    cj_batch_id: int,
    *,
    state: str,
    status: str,
    idle_for: str,
    partial_scoring: bool | None = None,
) -> None:
    """Put the batch in `state`/`status`, last active `idle_for` ago (an SQL interval)."""
    conn.execute(
        "update cj_batch_states set state = %s::cj_batch_state_enum,"
        " last_activity_at = now() - %s::interval,"
        " partial_scoring_triggered = coalesce(%s, partial_scoring_triggered)"
        " where batch_id = %s",
        (state, idle_for, partial_scoring, cj_batch_id),
    )
    conn.execute(
        "update cj_batch_uploads set status = %s::cj_batch_status_enum,"
        " updated_at = now() - %s::interval where id = %s",
        (status, idle_for, cj_batch_id),
    )


def _changed(cursor: psycopg.Cursor, what: str, cj_batch_id: int) -> None:
    """Raise when the statement touched nothing: the batch lacked what the fault breaks."""
    if cursor.rowcount < 1:
        raise CjHealthError(f"batch {cj_batch_id} has no {what} to break")


# --- the faults --------------------------------------------------------------------------


def batch20_wedge(conn: psycopg.Connection, cj_batch_id: int) -> None:
    """The Batch 20 wedge: the finalizer set COMPLETE_STABLE but never moved the state
    machine, so the batch sits in WAITING_CALLBACKS with no projections and no events."""
    _require_completed_batch(conn, cj_batch_id)
    _rewind_finalization(conn, cj_batch_id)
    _set_state(
        conn,
        cj_batch_id,
        state="WAITING_CALLBACKS",
        status="COMPLETE_STABLE",
        idle_for=WEDGED_FOR,
        partial_scoring=True,
    )


def scoring_wedge(conn: psycopg.Connection, cj_batch_id: int) -> None:
    """Finalization crashed after entering SCORING: the batch stays in SCORING, upload still
    PERFORMING_COMPARISONS, no projections or events, for longer than the scoring timeout."""
    _require_completed_batch(conn, cj_batch_id)
    _rewind_finalization(conn, cj_batch_id)
    _set_state(
        conn,
        cj_batch_id,
        state="SCORING",
        status="PERFORMING_COMPARISONS",
        idle_for=SCORING_FOR,
    )


def anchor_flags_lost(conn: psycopg.Connection, cj_batch_id: int) -> None:
    """The repository bug: anchors keep `is_anchor: true` in their metadata but the column
    is false (the upsert ignored the metadata)."""
    _require_completed_batch(conn, cj_batch_id)
    cursor = conn.execute(
        "update cj_processed_essays set is_anchor = false"
        " where cj_batch_id = %s and is_anchor",
        (cj_batch_id,),
    )
    _changed(cursor, "anchor essays", cj_batch_id)


def anchor_projected(conn: psycopg.Connection, cj_batch_id: int) -> None:
    """A grade projection written for an anchor essay (anchors are never projected)."""
    _require_completed_batch(conn, cj_batch_id)
    cursor = conn.execute(
        "insert into grade_projections (els_essay_id, cj_batch_id, primary_grade, grade_scale,"
        " confidence_score, confidence_label, calculation_metadata, assessment_method)"
        " select a.els_essay_id, a.cj_batch_id, p.primary_grade, p.grade_scale,"
        " p.confidence_score, p.confidence_label, %s, p.assessment_method"
        " from (select els_essay_id, cj_batch_id from cj_processed_essays"
        "       where cj_batch_id = %s and is_anchor order by els_essay_id limit 1) a"
        " cross join (select * from grade_projections where cj_batch_id = %s"
        "       order by els_essay_id limit 1) p",
        (Json({"fault": "anchor_projected"}), cj_batch_id, cj_batch_id),
    )
    _changed(cursor, "anchor essay and projection", cj_batch_id)


def misattributed_projection(
    conn: psycopg.Connection, cj_batch_id: int, other_batch_id: int
) -> None:
    """A projection filed under this batch for an essay of `other_batch_id` (the projection's
    `cj_batch_id` is not its essay's batch). The other batch keeps its own projection."""
    _require_completed_batch(conn, cj_batch_id)
    if other_batch_id == cj_batch_id:
        raise CjHealthError("a misattributed projection needs a second, different batch")
    cursor = conn.execute(
        "insert into grade_projections (els_essay_id, cj_batch_id, primary_grade, grade_scale,"
        " confidence_score, confidence_label, calculation_metadata, assessment_method)"
        " select p.els_essay_id, %s, p.primary_grade, p.grade_scale, p.confidence_score,"
        " p.confidence_label, p.calculation_metadata, p.assessment_method"
        " from grade_projections p where p.cj_batch_id = %s"
        " order by p.els_essay_id limit 1",
        (cj_batch_id, other_batch_id),
    )
    if cursor.rowcount < 1:
        raise CjHealthError(f"batch {other_batch_id} has no projection to misfile")


def completed_without_timestamp(conn: psycopg.Connection, cj_batch_id: int) -> None:
    """COMPLETED with upload COMPLETE_STABLE, but `completed_at` was never written."""
    _require_completed_batch(conn, cj_batch_id)
    conn.execute("update cj_batch_uploads set completed_at = null where id = %s", (cj_batch_id,))


def counter_mismatch(conn: psycopg.Connection, cj_batch_id: int) -> None:
    """Duplicate callbacks counted twice: the completed counter no longer matches the pairs."""
    _require_completed_batch(conn, cj_batch_id)
    conn.execute(
        "update cj_batch_states set completed_comparisons = completed_comparisons + 2"
        " where batch_id = %s",
        (cj_batch_id,),
    )


def event_missing(conn: psycopg.Connection, cj_batch_id: int) -> None:
    """One of the two outbox events was never written: the rich result event is gone, so the
    Result Aggregator never hears of the grades."""
    _require_completed_batch(conn, cj_batch_id)
    cursor = conn.execute(
        "delete from event_outbox where aggregate_type = 'assessment_result'"
        " and aggregate_id = %s",
        (str(cj_batch_id),),
    )
    _changed(cursor, "result event", cj_batch_id)


def event_unpublished(conn: psycopg.Connection, cj_batch_id: int) -> None:
    """The relay gave up on the result event: five failed publish attempts, `last_error`
    set, `published_at` still null. The Result Aggregator never hears of the grades."""
    _require_completed_batch(conn, cj_batch_id)
    cursor = conn.execute(
        "update event_outbox set published_at = null, retry_count = 5,"
        " last_error = 'KafkaTimeoutError: publish timed out'"
        " where aggregate_type = 'assessment_result' and aggregate_id = %s",
        (str(cj_batch_id),),
    )
    _changed(cursor, "result event", cj_batch_id)


def low_reliability(conn: psycopg.Connection, cj_batch_id: int) -> None:
    """Too few informative comparisons: student scores bunch together and every standard
    error sits at the 2.0 cap, so the scale does not separate the essays."""
    _require_completed_batch(conn, cj_batch_id)
    cursor = conn.execute(
        "update cj_processed_essays set current_bt_score = current_bt_score * 0.2,"
        " current_bt_se = 2.0 where cj_batch_id = %s and not is_anchor"
        " and current_bt_score is not null",
        (cj_batch_id,),
    )
    _changed(cursor, "scored student essays", cj_batch_id)


def stalled(conn: psycopg.Connection, cj_batch_id: int) -> None:
    """Callbacks stopped arriving: WAITING_CALLBACKS, upload PERFORMING_COMPARISONS, three
    pairs still pending, and no activity for longer than `stalled_after_minutes`."""
    _require_completed_batch(conn, cj_batch_id)
    _rewind_finalization(conn, cj_batch_id)
    cursor = conn.execute(
        "update cj_comparison_pairs set winner = null, completed_at = null, confidence = null,"
        " justification = null, raw_llm_response = null"
        " where id in (select id from cj_comparison_pairs where cj_batch_id = %s"
        "              and winner in ('essay_a', 'essay_b') order by id desc limit 3)",
        (cj_batch_id,),
    )
    _changed(cursor, "completed pairs", cj_batch_id)
    conn.execute(
        "update cj_batch_states set completed_comparisons = completed_comparisons - %s"
        " where batch_id = %s",
        (cursor.rowcount, cj_batch_id),
    )
    _set_state(
        conn,
        cj_batch_id,
        state="WAITING_CALLBACKS",
        status="PERFORMING_COMPARISONS",
        idle_for=STALLED_FOR,
    )


# --- the registry ------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One known failure class: how to cause it and the problem code that must detect it."""

    name: str
    code: str
    description: str
    apply: Callable[..., None]
    needs_other_batch: bool = False


def _fault(fn: Callable[..., None], code: str, *, needs_other_batch: bool = False) -> Fault:
    description = " ".join((fn.__doc__ or "").split())
    return Fault(fn.__name__, code, description, fn, needs_other_batch)


FAULTS: dict[str, Fault] = {
    fault.name: fault
    for fault in (
        _fault(batch20_wedge, "STUCK_FINALIZATION"),
        _fault(scoring_wedge, "SCORING_TOO_LONG"),
        _fault(anchor_flags_lost, "ANCHOR_FLAG_MISMATCH"),
        _fault(anchor_projected, "ANCHOR_PROJECTED"),
        _fault(misattributed_projection, "MISATTRIBUTED_PROJECTION", needs_other_batch=True),
        _fault(completed_without_timestamp, "COMPLETION_INCONSISTENT"),
        _fault(counter_mismatch, "COUNTER_MISMATCH"),
        _fault(event_missing, "EVENTS_MISSING"),
        _fault(event_unpublished, "EVENTS_UNPUBLISHED"),
        _fault(low_reliability, "LOW_RELIABILITY"),
        _fault(stalled, "STALLED"),
    )
}


def get_fault(name: str) -> Fault:
    try:
        return FAULTS[name]
    except KeyError:
        known = ", ".join(FAULTS)
        raise CjHealthError(f"unknown fault {name!r}; known faults: {known}") from None


def apply_fault(
    conn: psycopg.Connection,
    name: str,
    cj_batch_id: int,
    other_batch_id: int | None = None,
) -> Fault:
    """Break `cj_batch_id` with the named fault inside the caller's transaction."""
    fault = get_fault(name)
    if fault.needs_other_batch:
        if other_batch_id is None:
            raise CjHealthError(f"fault {name} needs a second batch (other_batch_id)")
        fault.apply(conn, cj_batch_id, other_batch_id)
    else:
        fault.apply(conn, cj_batch_id)
    return fault


def break_batch(
    database: Database, name: str, cj_batch_id: int, other_batch_id: int | None = None
) -> Fault:
    """Break one batch in its own transaction: all of the fault, or nothing."""
    with connect(database) as conn:
        fault = apply_fault(conn, name, cj_batch_id, other_batch_id)
        conn.commit()
    return fault
