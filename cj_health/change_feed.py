"""The change feed: triggers on the service tables that record which batches a write touched,
so that `cj-health refresh` finds the changed batches without reading the service tables.

Without it, the refresh finds changes by reading every row of every service table once
(`xmin` against a watermark, cj_health.batch_facts), which costs about as much as one
aggregate scan of those tables. With it, each service statement that inserts, updates or
deletes rows also inserts one row per batch it touched into `cj_batch_changes` (in the
monitoring schema), and the refresh takes those rows (`delete ... returning`) instead.

The triggers are statement-level AFTER triggers with transition tables: one insert per
statement, not per row. They are `ENABLE ALWAYS`, so they fire also for sessions with
`session_replication_role = replica` (restores, logical replication). The trigger functions
run as the role that installed them (SECURITY DEFINER, fixed search_path), so the service's
role needs no privilege on the monitoring schema. Installing takes a SHARE ROW EXCLUSIVE lock
on each service table for a moment, waiting at most `lock_timeout` behind running service
transactions; it is one transaction (all tables or none) and idempotent. `remove` drops the
triggers, the functions and the queue. Installing changes the service's database: it is an
operator's decision, taken with `cj-health change-feed install`, never done implicitly.

What a feed row means:
- `cj_batch_id` set: that batch's rows changed (for an update, both the old and the new
  batch of the row: an essay moved to another batch changes both);
- `aggregate_id` set: an outbox row of that aggregate changed (the upload's bos_batch_id,
  or the CJ batch id as text);
- neither set: every batch may have changed (an anchor reference or assessment instruction
  changed, or a service table was truncated): the refresh recomputes every batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from cj_health.db import monitoring_schema, source_schema

QUEUE_TABLE = "cj_batch_changes"
FUNCTION_PREFIX = "cj_record_changes_"
TRIGGER_PREFIX = "cj_health_changes_"
# Service tables whose every row belongs to one batch: the column naming it.
BATCH_KEYED_TABLES = {
    "cj_batch_uploads": "id",
    "cj_batch_states": "batch_id",
    "cj_processed_essays": "cj_batch_id",
    "cj_comparison_pairs": "cj_batch_id",
    "grade_projections": "cj_batch_id",
}
# Outbox rows name their batch by aggregate_id: the upload's bos_batch_id, or the CJ batch id.
OUTBOX_TABLE = "event_outbox"
OUTBOX_COLUMN = "aggregate_id"
# Tables that decide the facts of every batch of an assignment or course.
SHARED_TABLES = ("anchor_essay_references", "assessment_instructions")
FED_TABLES = (*BATCH_KEYED_TABLES, OUTBOX_TABLE, *SHARED_TABLES)
# One trigger per event: PostgreSQL allows transition tables only on single-event triggers.
EVENTS = ("insert", "update", "delete", "truncate")
# Installing waits at most this long for each table's lock behind running service writes.
INSTALL_LOCK_TIMEOUT = "5s"


@dataclass(frozen=True)
class FeedStatus:
    """Whether every trigger of the feed is installed and fires always."""

    queue_exists: bool
    missing: tuple[str, ...]  # "table: event" without an always-enabled trigger
    pending: int  # rows waiting in the queue

    @property
    def complete(self) -> bool:
        return self.queue_exists and not self.missing

    @property
    def installed(self) -> bool:
        """Anything of the feed present (complete or not)."""
        return self.queue_exists or len(self.missing) < len(FED_TABLES) * len(EVENTS)

    def summary(self) -> str:
        if self.complete:
            return f"change feed: installed on {len(FED_TABLES)} tables, {self.pending} pending"
        if not self.installed:
            return "change feed: not installed (refresh reads the service tables)"
        return "change feed: INCOMPLETE, missing " + ", ".join(self.missing)


def _queue() -> sql.Composed:
    return sql.Identifier(monitoring_schema(), QUEUE_TABLE)


def _function(table: str) -> sql.Composed:
    return sql.Identifier(monitoring_schema(), FUNCTION_PREFIX + table)


def _trigger(event: str) -> sql.Identifier:
    return sql.Identifier(TRIGGER_PREFIX + event)


def _record(rows: str, table: str) -> sql.Composed:
    """The insert that records the batches of the transition table `rows`: batch-keyed rows
    by their batch column, outbox rows by aggregate_id, a shared table as "everything"."""
    if table in SHARED_TABLES:
        return sql.SQL("insert into {queue} (source_table) values ({table});").format(
            queue=_queue(), table=sql.Literal(table)
        )
    keyed = table in BATCH_KEYED_TABLES
    return sql.SQL(
        "insert into {queue} (source_table, {queue_column})"
        " select distinct {table}, {column} from {rows};"
    ).format(
        queue=_queue(),
        queue_column=sql.Identifier("cj_batch_id" if keyed else OUTBOX_COLUMN),
        table=sql.Literal(table),
        column=sql.Identifier(BATCH_KEYED_TABLES[table] if keyed else OUTBOX_COLUMN),
        rows=sql.Identifier(rows),
    )


def _function_body(conn: psycopg.Connection, table: str) -> sql.Composed:
    """The trigger function of one table: PL/pgSQL plans a statement when it first runs it,
    so each branch names only the transition tables its event has. Nothing is recorded when
    the queue is gone (dropped by hand): a service write never fails for the monitoring's
    sake, and a missing queue makes the feed incomplete, so the refresh stops trusting it."""
    if table in SHARED_TABLES:
        body = _record("", table)  # every event, truncate included: everything changed
    else:
        body = sql.SQL(
            "if tg_op = 'TRUNCATE' then {everything}"
            " else if tg_op in ('INSERT', 'UPDATE') then {new} end if;"
            " if tg_op in ('UPDATE', 'DELETE') then {old} end if; end if;"
        ).format(
            everything=sql.SQL("insert into {} (source_table) values ({});").format(
                _queue(), sql.Literal(table)
            ),
            new=_record("new_rows", table),
            old=_record("old_rows", table),
        )
    queue = sql.Literal(_queue().as_string(conn))
    return sql.SQL(
        "begin if pg_catalog.to_regclass({queue}) is not null then {body} end if;"
        " return null; end"
    ).format(queue=queue, body=body)


def _install_table(conn: psycopg.Connection, table: str) -> None:
    target = sql.Identifier(source_schema(), table)
    body = _function_body(conn, table).as_string(conn)
    conn.execute(
        sql.SQL(
            "create or replace function {function}() returns trigger language plpgsql"
            " security definer set search_path = pg_catalog, pg_temp as {body}"
        ).format(function=_function(table), body=sql.Literal(body))
    )
    conn.execute(sql.SQL("revoke all on function {}() from public").format(_function(table)))
    for event in EVENTS:
        conn.execute(
            sql.SQL("drop trigger if exists {trigger} on {table}").format(
                trigger=_trigger(event), table=target
            )
        )
        if table in SHARED_TABLES or event == "truncate":
            referencing = sql.SQL("")
        elif event == "insert":
            referencing = sql.SQL("referencing new table as new_rows")
        elif event == "update":
            referencing = sql.SQL("referencing old table as old_rows new table as new_rows")
        else:
            referencing = sql.SQL("referencing old table as old_rows")
        conn.execute(
            sql.SQL(
                "create trigger {trigger} after {event} on {table} {referencing}"
                " for each statement execute function {function}()"
            ).format(
                trigger=_trigger(event),
                event=sql.SQL(event),
                table=target,
                referencing=referencing,
                function=_function(table),
            )
        )
        conn.execute(
            sql.SQL("alter table {table} enable always trigger {trigger}").format(
                table=target, trigger=_trigger(event)
            )
        )


def install(conn: psycopg.Connection) -> FeedStatus:
    """Install (or reinstall) the feed in one transaction; `conn` in autocommit mode."""
    with conn.transaction():
        conn.execute("select set_config('lock_timeout', %s, true)", (INSTALL_LOCK_TIMEOUT,))
        conn.execute(
            sql.SQL("create schema if not exists {}").format(sql.Identifier(monitoring_schema()))
        )
        conn.execute(
            sql.SQL(
                "create table if not exists {} ("
                " source_table text not null,"
                " cj_batch_id integer,"
                " aggregate_id text)"
            ).format(_queue())
        )
        conn.execute(
            sql.SQL("comment on table {} is {}").format(
                _queue(),
                sql.Literal(
                    "Batches touched by service writes since the last cj-health refresh,"
                    " written by the cj_health_changes_* triggers; consumed by the refresh."
                ),
            )
        )
        for table in FED_TABLES:
            _install_table(conn, table)
    return status(conn)


def remove(conn: psycopg.Connection) -> None:
    """Drop the triggers, their functions and the queue, in one transaction."""
    with conn.transaction():
        conn.execute("select set_config('lock_timeout', %s, true)", (INSTALL_LOCK_TIMEOUT,))
        for table in FED_TABLES:
            target = sql.Identifier(source_schema(), table)
            if _table_exists(conn, source_schema(), table):
                for event in EVENTS:
                    conn.execute(
                        sql.SQL("drop trigger if exists {} on {}").format(_trigger(event), target)
                    )
            conn.execute(sql.SQL("drop function if exists {}()").format(_function(table)))
        conn.execute(sql.SQL("drop table if exists {}").format(_queue()))


def _table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    return (
        conn.execute(
            "select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n"
            " on n.oid = c.relnamespace where n.nspname = %s and c.relname = %s",
            (schema, table),
        ).fetchone()
        is not None
    )


def status(conn: psycopg.Connection, *, count_pending: bool = True) -> FeedStatus:
    """Which triggers are in place, firing always, and calling the feed's function."""
    present = {
        (table, trigger)
        for table, trigger in conn.execute(
            "select c.relname, t.tgname from pg_catalog.pg_trigger t"
            " join pg_catalog.pg_class c on c.oid = t.tgrelid"
            " join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
            " join pg_catalog.pg_proc p on p.oid = t.tgfoid"
            " join pg_catalog.pg_namespace pn on pn.oid = p.pronamespace"
            " where n.nspname = %s and t.tgenabled = 'A' and pn.nspname = %s"
            " and p.proname = %s || c.relname",
            (source_schema(), monitoring_schema(), FUNCTION_PREFIX),
        )
    }
    missing = tuple(
        f"{table}: {event}"
        for table in FED_TABLES
        for event in EVENTS
        if (table, TRIGGER_PREFIX + event) not in present
    )
    queue_exists = _table_exists(conn, monitoring_schema(), QUEUE_TABLE)
    pending = 0
    if queue_exists and count_pending:
        (pending,) = conn.execute(sql.SQL("select count(*) from {}").format(_queue())).fetchone()
    return FeedStatus(queue_exists, missing, pending)


@dataclass(frozen=True)
class Changes:
    """What the feed recorded since the last refresh that took it."""

    batch_ids: frozenset[int]
    everything: bool  # a shared table changed or a table was truncated
    rows: int  # feed rows taken


NO_CHANGES = Changes(frozenset(), False, 0)


def take(conn: psycopg.Connection) -> Changes:
    """Take every committed feed row (inside the caller's transaction: rolled back with it).
    Rows of transactions that commit later stay for the next refresh."""
    rows = conn.execute(
        sql.SQL("delete from {} returning cj_batch_id, aggregate_id").format(_queue())
    ).fetchall()
    batches = {batch for batch, _ in rows if batch is not None}
    aggregates = sorted({aggregate for _, aggregate in rows if aggregate is not None})
    if aggregates:
        batches |= _uploads_of_aggregates(conn, aggregates)
    everything = any(batch is None and aggregate is None for batch, aggregate in rows)
    return Changes(frozenset(batches), everything, len(rows))


def _uploads_of_aggregates(conn: psycopg.Connection, aggregates: list[str]) -> set[int]:
    """The uploads an outbox aggregate id names: by bos_batch_id, or the CJ batch id as text.
    A separate query with the ids as arrays, so each finds its uploads through an index
    whatever the planner guesses of the queue's size."""
    batch_ids = [
        int(value) for value in aggregates
        if value.isascii() and value.isdigit() and int(value) < 2**31
    ]
    rows = conn.execute(
        sql.SQL(
            "select id from {uploads} where bos_batch_id = any(%s)"
            " union select id from {uploads} where id = any(%s)"
        ).format(uploads=sql.Identifier(source_schema(), "cj_batch_uploads")),
        (aggregates, batch_ids),
    ).fetchall()
    return {upload for (upload,) in rows}
