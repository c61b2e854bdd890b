"""The change feed: triggers on the service tables that record which batches a write touched,
so that `cj-health refresh` finds the changed batches without reading the service tables.

Without it, the refresh compares a fingerprint of every service row with the one the previous
refresh stored (cj_health.source_fingerprints), which reads every row once. With it, each
service statement that inserts, updates, deletes or truncates also inserts one row per batch
it touched into the queue `cj_batch_changes`, and the refresh takes those rows (`delete ...
returning`) instead.

Where it lives. Its own schema, `<monitoring schema>_feed` (`cj_monitoring_feed`), owned by the
role that installs it: the owner of the service tables, since creating a trigger on a table
needs its owner. In it: the queue, the loss counter `cj_batch_changes_lost` (a sequence) and
one trigger function per service table. `install` grants the role that runs the refresh what
the refresh needs (USAGE on the schema, SELECT and DELETE on the queue, SELECT on the
counter); the service's own role needs nothing.

The triggers are statement-level AFTER triggers with transition tables: one insert per
statement, not per row. They are `ENABLE ALWAYS`, so they fire also for sessions with
`session_replication_role = replica` (restores, logical replication). The functions run as
their owner (SECURITY DEFINER, fixed search_path).

A trigger never makes a service write fail or wait for the monitoring's sake. Before it
records, it checks, without raising: that its owner still has USAGE on the feed's schema and
INSERT on the queue (by oid: a dropped object reads as "no"); that it gets the queue's lock
without waiting (`LOCK ... NOWAIT` in an exception block that writes nothing, so it opens no
subtransaction with a transaction id, and a service transaction of many statements never
overflows the server's subtransaction cache); that the name still means the installed queue
and its definition is the installed one (columns, no constraint, index, trigger, rule or
row-level security, logged). The lock and the definition are checked once per transaction:
the lock, held to its end, keeps the definition as it is, and a transaction-local setting
remembers it (undone with the lock by a rollback to a savepoint). Only then does it insert,
outside any exception block. When one
check fails, it records the loss instead: `nextval` of the loss counter (which LOCK TABLE
cannot lock; in an exception block with a 10 ms lock_timeout; nextval gives no
subtransaction an id), and nothing else. What the triggers have survived in the tests
(tests/python/test_feed_harmless.py): the owner's grants revoked, the queue dropped, renamed,
given a constraint or locked by another session, and the queue locked while the loss counter
was held by an uncommitted ALTER SEQUENCE (the one loss nothing records: the hourly full
refresh bounds it).

`inspect` reads what the refresh needs to decide whether the feed can be trusted: which
triggers are in place (always enabled, calling exactly the function `install` wrote), the
owner's privileges, the queue's definition, whether this role can take the queue, the loss
counter, and a signature of every catalog row the feed depends on (the schema, its relations,
the counter's sequence row, the functions, the triggers, the owner's role memberships, each
with its row version). GRANT and REVOKE rewrite the row they change, so a revoke followed by a
grant still changes the signature. How cj_health.batch_facts uses them is described there.

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
LOSS_COUNTER = "cj_batch_changes_lost"
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
# The transaction-local setting in which a trigger remembers that its transaction holds the
# queue's lock (the queue's oid).
LOCKED_SETTING = "cj_health.changes_queue_locked"
# The longest a trigger waits for the loss counter's lock (ALTER SEQUENCE holds it).
LOSS_LOCK_TIMEOUT = "10ms"

# The queue as `install` creates it, and the test of its definition that the triggers and
# `inspect` share (one definition): a change that could make an insert fail, or make the
# queue lose rows in a crash, fails it. `{queue}` is the queue's oid.
QUEUE_COLUMNS = (
    ("source_table", "text", True),
    ("cj_batch_id", "integer", False),
    ("aggregate_id", "text", False),
)
_QUEUE_INTACT = (
    "(select count(*) from pg_catalog.pg_class c"
    " join pg_catalog.pg_attribute a on a.attrelid = c.oid where c.oid = {queue}::oid"
    " and c.relkind = 'r' and c.relpersistence = 'p' and c.relnatts = 3 and c.relchecks = 0"
    " and not c.relhastriggers and not c.relhasrules and not c.relhasindex"
    " and not c.relrowsecurity and not c.relispartition"
    " and a.attnum > 0 and not a.attisdropped and not a.atthasdef and a.attidentity = ''"
    " and a.attgenerated = '' and (a.attnum, a.attname, a.atttypid, a.attnotnull) in ("
    "(1, 'source_table', 25, true), (2, 'cj_batch_id', 23, false),"
    " (3, 'aggregate_id', 25, false))) = 3"
)


def feed_schema() -> str:
    """The feed's own schema, beside the monitoring schema."""
    return f"{monitoring_schema()}_feed"


def _queue() -> sql.Composed:
    return sql.Identifier(feed_schema(), QUEUE_TABLE)


def _counter() -> sql.Composed:
    return sql.Identifier(feed_schema(), LOSS_COUNTER)


def _function(table: str) -> sql.Composed:
    return sql.Identifier(feed_schema(), FUNCTION_PREFIX + table)


def _trigger(event: str) -> sql.Identifier:
    return sql.Identifier(TRIGGER_PREFIX + event)


@dataclass(frozen=True)
class FeedIds:
    """The oids a trigger function names its objects by (an oid never resolves to another
    object, and looking it up needs no privilege)."""

    schema: int
    queue: int
    counter: int


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


def _function_body(conn: psycopg.Connection, table: str, ids: FeedIds) -> str:
    """The trigger function of one table (see the module docstring). PL/pgSQL plans a
    statement when it first runs it, so each branch names only the transition tables its
    event has."""
    if table in SHARED_TABLES:
        record = _record("", table)  # every event, truncate included: everything changed
    else:
        record = sql.SQL(
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
    queue_name = sql.Literal(_queue().as_string(conn))
    body = sql.SQL(
        "declare ready boolean := false; begin"
        # The owner's privileges, by oid: null, never an error, when the object is gone.
        " if pg_catalog.has_schema_privilege({schema}::oid, 'USAGE')"
        " and pg_catalog.has_table_privilege({queue}::oid, 'INSERT') then"
        # Once per transaction: the queue's lock without waiting (this block writes
        # nothing, so its subtransaction never gets a transaction id) and its definition.
        # The lock, held to the end of the transaction, keeps both as they are: the
        # setting remembers it, and is undone with it by a rollback to a savepoint.
        " if pg_catalog.current_setting({locked}, true) is not distinct from {queue_text} then"
        " ready := pg_catalog.to_regclass({queue_name}) = {queue}::oid;"
        " else"
        " begin lock table {queue_ident} in row exclusive mode nowait;"
        " ready := pg_catalog.to_regclass({queue_name}) = {queue}::oid and {intact};"
        " exception when others then ready := false; end;"
        " if ready then perform pg_catalog.set_config({locked}, {queue_text}, true); end if;"
        " end if;"
        " end if;"
        " if ready then {record}"
        # The loss, counted where no lock can hold it for long; the raise undoes the
        # block's setting (and only that: a sequence's increment is never rolled back).
        " else begin"
        " perform pg_catalog.set_config('lock_timeout', {loss_timeout}, true);"
        " perform pg_catalog.nextval({counter}::regclass);"
        " raise sqlstate 'P0001';"
        " exception when others then null; end;"
        " end if;"
        " return null; end"
    ).format(
        schema=sql.Literal(ids.schema),
        queue=sql.Literal(ids.queue),
        queue_ident=_queue(),
        queue_name=queue_name,
        locked=sql.Literal(LOCKED_SETTING),
        queue_text=sql.Literal(str(ids.queue)),
        intact=sql.SQL(_QUEUE_INTACT.format(queue=ids.queue)),
        record=record,
        loss_timeout=sql.Literal(LOSS_LOCK_TIMEOUT),
        counter=sql.Literal(ids.counter),
    )
    return body.as_string(conn)


def _install_table(conn: psycopg.Connection, table: str, ids: FeedIds) -> None:
    target = sql.Identifier(source_schema(), table)
    conn.execute(
        sql.SQL(
            "create or replace function {function}() returns trigger language plpgsql"
            " security definer set search_path = pg_catalog, pg_temp as {body}"
        ).format(function=_function(table), body=sql.Literal(_function_body(conn, table, ids)))
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


def _feed_ids(conn: psycopg.Connection) -> FeedIds | None:
    """The oids of the feed's schema, queue and loss counter; None when one is missing."""
    row = conn.execute(
        "select n.oid::bigint,"
        " (select c.oid::bigint from pg_catalog.pg_class c"
        "   where c.relnamespace = n.oid and c.relname = %s and c.relkind = 'r'),"
        " (select c.oid::bigint from pg_catalog.pg_class c"
        "   where c.relnamespace = n.oid and c.relname = %s and c.relkind = 'S')"
        " from pg_catalog.pg_namespace n where n.nspname = %s",
        (QUEUE_TABLE, LOSS_COUNTER, feed_schema()),
    ).fetchone()
    if row is None or None in row:
        return None
    return FeedIds(*(int(value) for value in row))


def _queue_intact(conn: psycopg.Connection, ids: FeedIds) -> bool:
    statement = sql.SQL("select " + _QUEUE_INTACT.format(queue=ids.queue))
    return bool(conn.execute(statement).fetchone()[0])


def default_refresh_role(conn: psycopg.Connection) -> str | None:
    """The role `install` grants the refresh's privileges to when none is named: the owner of
    the monitoring schema (the role that built it, and refreshes), if it is another role."""
    row = conn.execute(
        "select pg_catalog.pg_get_userbyid(nspowner) from pg_catalog.pg_namespace"
        " where nspname = %s and nspowner <> (select oid from pg_catalog.pg_roles"
        "   where rolname = current_user)",
        (monitoring_schema(),),
    ).fetchone()
    return row[0] if row else None


def refresh_grants(role: str) -> list[sql.Composed]:
    """What the role that runs `cj-health refresh` needs on the feed: to read and take the
    queue and to read the loss counter."""
    grantee = sql.Identifier(role)
    return [
        sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(feed_schema()), grantee),
        sql.SQL("grant select, delete on table {} to {}").format(_queue(), grantee),
        sql.SQL("grant select on sequence {} to {}").format(_counter(), grantee),
    ]


def install(conn: psycopg.Connection, refresh_role: str | None = None) -> FeedState:
    """Install (or reinstall) the feed in one transaction; `conn` in autocommit mode. The
    queue and the loss counter are kept when they exist and are intact (their rows are
    changes not yet taken); `refresh_role` gets the refresh's privileges."""
    with conn.transaction():
        conn.execute("select set_config('lock_timeout', %s, true)", (INSTALL_LOCK_TIMEOUT,))
        _remove_legacy(conn)
        schema = sql.Identifier(feed_schema())
        conn.execute(sql.SQL("create schema if not exists {}").format(schema))
        ids = _feed_ids(conn)
        if ids is not None and not _queue_intact(conn, ids):
            conn.execute(sql.SQL("drop table {}").format(_queue()))
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}{}").format(
                sql.Identifier(name), sql.SQL(kind), sql.SQL(" not null" if not_null else "")
            )
            for name, kind, not_null in QUEUE_COLUMNS
        )
        conn.execute(sql.SQL("create table if not exists {} ({})").format(_queue(), columns))
        conn.execute(
            sql.SQL("comment on table {} is {}").format(
                _queue(),
                sql.Literal(
                    "Batches touched by service writes since the last cj-health refresh,"
                    " written by the cj_health_changes_* triggers; taken by the refresh."
                ),
            )
        )
        conn.execute(sql.SQL("create sequence if not exists {}").format(_counter()))
        conn.execute(
            sql.SQL("comment on sequence {} is {}").format(
                _counter(),
                sql.Literal(
                    "Service statements the cj_health_changes_* triggers could not record;"
                    " when it moves, the next cj-health refresh reads the service tables."
                ),
            )
        )
        if refresh_role:
            for grant in refresh_grants(refresh_role):
                conn.execute(grant)
        ids = _feed_ids(conn)
        assert ids is not None
        for table in FED_TABLES:
            _install_table(conn, table, ids)
    return inspect(conn)


def _remove_legacy(conn: psycopg.Connection) -> None:
    """An earlier layout kept the queue and the functions in the monitoring schema: drop
    what of it is there (looked up first: this role may have no USAGE on that schema)."""
    functions = conn.execute(
        "select p.proname from pg_catalog.pg_proc p"
        " join pg_catalog.pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = %s and p.proname = any(%s)",
        (monitoring_schema(), [FUNCTION_PREFIX + table for table in FED_TABLES]),
    ).fetchall()
    for (name,) in functions:
        conn.execute(
            sql.SQL("drop function {}() cascade").format(
                sql.Identifier(monitoring_schema(), name)
            )
        )
    if _table_exists(conn, monitoring_schema(), QUEUE_TABLE):
        conn.execute(
            sql.SQL("drop table {}").format(sql.Identifier(monitoring_schema(), QUEUE_TABLE))
        )


def remove(conn: psycopg.Connection) -> None:
    """Drop the triggers, their functions, the queue, the loss counter and the feed's schema,
    in one transaction."""
    with conn.transaction():
        conn.execute("select set_config('lock_timeout', %s, true)", (INSTALL_LOCK_TIMEOUT,))
        for table in FED_TABLES:
            if _table_exists(conn, source_schema(), table):
                target = sql.Identifier(source_schema(), table)
                for event in EVENTS:
                    conn.execute(
                        sql.SQL("drop trigger if exists {} on {}").format(_trigger(event), target)
                    )
            conn.execute(sql.SQL("drop function if exists {}()").format(_function(table)))
        conn.execute(sql.SQL("drop table if exists {}").format(_queue()))
        conn.execute(sql.SQL("drop sequence if exists {}").format(_counter()))
        conn.execute(sql.SQL("drop schema if exists {}").format(sql.Identifier(feed_schema())))
        _remove_legacy(conn)


def _table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    return (
        conn.execute(
            "select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n"
            " on n.oid = c.relnamespace where n.nspname = %s and c.relname = %s",
            (schema, table),
        ).fetchone()
        is not None
    )


@dataclass(frozen=True)
class FeedState:
    """What `inspect` found: whether the feed is there, whether it records every write now,
    whether this role can take it, and what the refresh compares between two refreshes."""

    installed: bool  # anything of the feed present
    missing: tuple[str, ...]  # "table: event" without the feed's always-enabled trigger
    problems: tuple[str, ...]  # why it does not record every write now, or cannot be taken
    can_take: bool  # this role may read and empty the queue
    signature: str  # the catalog rows the feed depends on, with their row versions
    losses: int | None  # the loss counter (None: cannot be read)
    pending: int | None  # rows waiting in the queue (None: not counted, or cannot be)

    @property
    def complete(self) -> bool:
        """Every trigger in place and recording, and the queue takeable by this role."""
        return self.installed and not self.missing and not self.problems

    def summary(self) -> str:
        if not self.installed:
            return "change feed: not installed (refresh reads the service tables)"
        pending = "" if self.pending is None else f", {self.pending} pending"
        if self.complete:
            return f"change feed: installed on {len(FED_TABLES)} tables{pending}"
        reasons = list(self.problems)
        if self.missing:
            reasons.insert(0, "missing " + ", ".join(self.missing))
        return (
            f"change feed: INCOMPLETE ({'; '.join(reasons)}){pending};"
            " refresh reads the service tables"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "installed": self.installed,
            "complete": self.complete,
            "missing": list(self.missing),
            "problems": list(self.problems),
            "pending": self.pending,
            "losses": self.losses,
        }


NOT_INSTALLED = FeedState(False, (), (), False, "", None, None)


def inspect(conn: psycopg.Connection, *, count_pending: bool = True) -> FeedState:
    """The feed as the refresh and `status` see it (catalog reads, no lock; see the module
    docstring). Reads nothing this role may not read: what it cannot read is a problem."""
    ids = _feed_ids(conn)
    owner = _feed_owner(conn)
    present = _installed_triggers(conn, ids, owner)
    missing = tuple(
        f"{table}: {event}"
        for table in FED_TABLES
        for event in EVENTS
        if (table, event) not in present
    )
    if ids is None and not _named_triggers(conn) and not _schema_exists(conn):
        return NOT_INSTALLED
    problems: list[str] = []
    if ids is None:
        problems.append(f"the queue or the loss counter of {feed_schema()} is gone")
    else:
        problems += _owner_problems(conn, ids, owner)
    can_take = ids is not None and _can_take(conn, ids)
    if ids is not None and not can_take:
        problems.append(
            f"{_current_user(conn)} may not take the queue (the queue grows): run"
            f" `cj-health change-feed install --refresh-role {_current_user(conn)}` as the"
            " owner of the service tables"
        )
    losses = _losses(conn) if can_take else None
    pending = None
    if can_take and count_pending:
        (pending,) = conn.execute(sql.SQL("select count(*) from {}").format(_queue())).fetchone()
    return FeedState(
        True, missing, tuple(problems), can_take, _signature(conn, owner), losses, pending
    )


def _schema_exists(conn: psycopg.Connection) -> bool:
    return (
        conn.execute(
            "select 1 from pg_catalog.pg_namespace where nspname = %s", (feed_schema(),)
        ).fetchone()
        is not None
    )


def _current_user(conn: psycopg.Connection) -> str:
    return str(conn.execute("select current_user").fetchone()[0])


def _feed_owner(conn: psycopg.Connection) -> int | None:
    """The role the trigger functions run as: the owner of the queue (install makes both)."""
    row = conn.execute(
        "select c.relowner::bigint from pg_catalog.pg_class c"
        " join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relname = %s",
        (feed_schema(), QUEUE_TABLE),
    ).fetchone()
    return int(row[0]) if row else None


def _named_triggers(conn: psycopg.Connection) -> list[tuple[str, str, int]]:
    """(table, event, tgtype) of every trigger on the service tables named like the feed's."""
    rows = conn.execute(
        "select c.relname, t.tgname, t.tgtype from pg_catalog.pg_trigger t"
        " join pg_catalog.pg_class c on c.oid = t.tgrelid"
        " join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relname = any(%s) and t.tgname like %s",
        (source_schema(), list(FED_TABLES), TRIGGER_PREFIX + "%"),
    ).fetchall()
    return [(table, name.removeprefix(TRIGGER_PREFIX), int(kind)) for table, name, kind in rows]


# pg_trigger.tgtype of a statement-level AFTER trigger on one event (bits: 1 row, 2 before,
# 4 insert, 8 delete, 16 update, 32 truncate).
_TRIGGER_TYPES = {"insert": 4, "delete": 8, "update": 16, "truncate": 32}


def _installed_triggers(
    conn: psycopg.Connection, ids: FeedIds | None, owner: int | None
) -> set[tuple[str, str]]:
    """(table, event) of each trigger that is the feed's: fires always, after each statement
    of its one event, calling exactly the function `install` writes for that table today
    (owner, security definer, search_path, and a body naming the feed's objects by their
    current oids)."""
    if ids is None or owner is None:
        return set()
    rows = conn.execute(
        "select c.relname, t.tgname, t.tgtype, p.prosrc, p.prosecdef, p.proowner::bigint,"
        " coalesce(p.proconfig, '{}')"
        " from pg_catalog.pg_trigger t"
        " join pg_catalog.pg_class c on c.oid = t.tgrelid"
        " join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
        " join pg_catalog.pg_proc p on p.oid = t.tgfoid"
        " where n.nspname = %s and t.tgenabled = 'A'"
        " and p.pronamespace = %s::oid and p.proname = %s || c.relname and t.tgname like %s",
        (source_schema(), ids.schema, FUNCTION_PREFIX, TRIGGER_PREFIX + "%"),
    ).fetchall()
    bodies = {table: _function_body(conn, table, ids) for table in FED_TABLES}
    present = set()
    for table, trigger, kind, source, definer, function_owner, config in rows:
        event = trigger.removeprefix(TRIGGER_PREFIX)
        if (
            table in bodies
            and _TRIGGER_TYPES.get(event) == int(kind)
            and source == bodies[table]
            and definer
            and function_owner == owner
            and "search_path=pg_catalog, pg_temp" in config
        ):
            present.add((table, event))
    return present


def _owner_problems(conn: psycopg.Connection, ids: FeedIds, owner: int | None) -> list[str]:
    """Why the triggers cannot record now, checked as they check it, for their owner."""
    if owner is None:
        return ["the queue has no owner"]
    usage, insert, counter = conn.execute(
        "select pg_catalog.has_schema_privilege(%(owner)s::oid, %(schema)s::oid, 'USAGE'),"
        " pg_catalog.has_table_privilege(%(owner)s::oid, %(queue)s::oid, 'INSERT'),"
        " pg_catalog.has_sequence_privilege(%(owner)s::oid, %(counter)s::oid, 'USAGE, UPDATE')",
        {"owner": owner, "schema": ids.schema, "queue": ids.queue, "counter": ids.counter},
    ).fetchone()
    problems = []
    if not usage:
        problems.append(f"the feed's owner lacks USAGE on schema {feed_schema()}")
    if not insert:
        problems.append(f"the feed's owner lacks INSERT on {feed_schema()}.{QUEUE_TABLE}")
    if not counter:
        problems.append(f"the feed's owner lacks USAGE on {feed_schema()}.{LOSS_COUNTER}")
    if not _queue_intact(conn, ids):
        problems.append(
            f"{feed_schema()}.{QUEUE_TABLE} was altered since install (run install again)"
        )
    return problems


def _can_take(conn: psycopg.Connection, ids: FeedIds) -> bool:
    """Whether this role may read and empty the queue and read the loss counter (by oid:
    no error when it may not)."""
    row = conn.execute(
        "select pg_catalog.has_schema_privilege(%(schema)s::oid, 'USAGE'),"
        " pg_catalog.has_table_privilege(%(queue)s::oid, 'SELECT'),"
        " pg_catalog.has_table_privilege(%(queue)s::oid, 'DELETE'),"
        " pg_catalog.has_sequence_privilege(%(counter)s::oid, 'SELECT')",
        {"schema": ids.schema, "queue": ids.queue, "counter": ids.counter},
    ).fetchone()
    return all(row)


def _losses(conn: psycopg.Connection) -> int:
    (value,) = conn.execute(
        sql.SQL("select case when is_called then last_value else 0 end from {}").format(
            _counter()
        )
    ).fetchone()
    return int(value)


def _signature(conn: psycopg.Connection, owner: int | None) -> str:
    """Every catalog row the feed depends on, each with its row version (xmin): any install,
    removal, reinstall, ALTER, disable or enable, GRANT or REVOKE, or a change of the owner's
    role memberships writes a new row version, so the text changes."""
    (text,) = conn.execute(
        "with fed_tables as ("
        "  select c.oid from pg_catalog.pg_class c"
        "  join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
        "  where n.nspname = %(source)s and c.relname = any(%(tables)s)),"
        " feed as (select oid from pg_catalog.pg_namespace where nspname = %(feed)s)"
        " select coalesce(string_agg(part, ' ' order by part), '') from ("
        "  select 'schema:' || n.oid || ':' || n.xmin from pg_catalog.pg_namespace n"
        "   where n.oid in (select oid from feed)"
        "  union all select 'relation:' || c.oid || ':' || c.xmin from pg_catalog.pg_class c"
        "   where c.relnamespace in (select oid from feed)"
        "  union all select 'sequence:' || s.seqrelid || ':' || s.xmin"
        "   from pg_catalog.pg_sequence s join pg_catalog.pg_class c on c.oid = s.seqrelid"
        "   where c.relnamespace in (select oid from feed)"
        "  union all select 'function:' || p.oid || ':' || p.xmin from pg_catalog.pg_proc p"
        "   where p.pronamespace in (select oid from feed)"
        "  union all select 'trigger:' || t.oid || ':' || t.xmin || ':' || t.tgenabled::text"
        "   from pg_catalog.pg_trigger t where t.tgrelid in (select oid from fed_tables)"
        "   and t.tgname like %(prefix)s"
        "  union all select 'member:' || m.roleid || ':' || m.member || ':' || m.xmin"
        "   from pg_catalog.pg_auth_members m where m.member = %(owner)s::oid"
        " ) as parts (part)",
        {
            "source": source_schema(),
            "tables": list(FED_TABLES),
            "feed": feed_schema(),
            "prefix": TRIGGER_PREFIX + "%",
            "owner": owner or 0,
        },
    ).fetchone()
    return str(text)


@dataclass(frozen=True)
class Changes:
    """What the feed recorded since the last refresh that took it."""

    batch_ids: frozenset[int]
    everything: bool  # a shared table changed or a table was truncated
    rows: int  # feed rows taken


NO_CHANGES = Changes(frozenset(), False, 0)


def take(conn: psycopg.Connection) -> Changes:
    """Take every feed row the caller's snapshot sees (inside the caller's transaction:
    rolled back with it). Rows of transactions that commit later stay for the next refresh."""
    rows = conn.execute(
        sql.SQL("delete from {} returning cj_batch_id, aggregate_id").format(_queue())
    ).fetchall()
    batches = {batch for batch, _ in rows if batch is not None}
    aggregates = sorted({aggregate for _, aggregate in rows if aggregate is not None})
    if aggregates:
        batches |= uploads_of_aggregates(conn, aggregates)
    everything = any(batch is None and aggregate is None for batch, aggregate in rows)
    return Changes(frozenset(batches), everything, len(rows))


def uploads_of_aggregates(conn: psycopg.Connection, aggregates: list[str]) -> set[int]:
    """The uploads an outbox aggregate id names: by bos_batch_id, or the CJ batch id as text.
    A separate query with the ids as arrays, so each finds its uploads through an index
    whatever the planner guesses of the number of ids."""
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
