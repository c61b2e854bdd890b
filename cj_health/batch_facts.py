"""The stored per-batch facts: int_batch_facts kept as the table int_batch_facts_incremental,
brought up to date at each refresh for the batches whose rows changed.

A batch's facts change only when one of its service rows is inserted, updated or deleted.

With the change feed installed (cj_health.change_feed), its triggers name those batches, and
the refresh takes them from the feed's queue; it rebuilds every batch only when the feed
says a shared table changed or a table was truncated. The feed is trusted only when every
trigger was in place at the previous refresh too (`used_change_feed` in the watermark row)
and is now; otherwise the refresh finds the changes as below, so a feed being installed,
removed or disabled never loses a change (except a write made while a trigger was disabled
and re-enabled between two refreshes; the hourly full rebuild bounds that).

Without the feed, inserts and updates are found by transaction id, not by the service's
timestamps (which the service writes itself, not always, and sometimes from its own clock):
a row whose `xmin` is at least the watermark (`changes_after_xid`, the oldest transaction
the previous refresh's snapshot could not see) was written since, and its batch is
recomputed. Deletes leave no row behind: the service tables' delete counters
(pg_stat_user_tables.n_tup_del) are kept with the watermark, and when they moved every batch
is rebuilt. So is every batch when the anchor references or the assessment instructions
changed (they decide many batches' facts), when there is no watermark (the first refresh
after `dbt run`, which clears it), and on `cj-health refresh --full`. The facts of a batch
whose upload is gone are deleted. Only rows whose facts differ are written, so an unchanged
batch is an unchanged row.

`update_batch_facts` runs inside the caller's transaction (`cj_health.build.refresh`), before
the concurrent refresh of cj_batch_health, and holds the watermark table's lock to the end
of it: one writer of the facts at a time (`dbt run` takes the same lock).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from cj_health import change_feed
from cj_health.change_feed import BATCH_KEYED_TABLES, OUTBOX_TABLE, SHARED_TABLES
from cj_health.db import monitoring_schema, source_schema
from cj_health.errors import CjHealthError

FACTS_VIEW = "int_batch_facts"
FACTS_TABLE = "int_batch_facts_incremental"
WATERMARK_TABLE = "cj_batch_facts_watermark"
# A full rebuild's recomputed facts, a temporary table of the refresh transaction.
RECOMPUTED_TABLE = "cj_recomputed_batch_facts"

SOURCE_TABLES = (*BATCH_KEYED_TABLES, OUTBOX_TABLE, *SHARED_TABLES)
# Past this many transactions since the watermark, 32-bit xmin arithmetic is not trusted.
MAX_XID_DISTANCE = 1 << 30


@dataclass(frozen=True)
class FactsUpdate:
    """What one update of the stored facts did."""

    mode: str  # "incremental" or "full"
    reason: str  # why a full rebuild, or "" for an incremental update
    recomputed: int  # batches recomputed (every batch on a full rebuild)
    written: int  # facts rows inserted or changed
    deleted: int  # facts rows of deleted batches removed
    batch_ids: tuple[int, ...] = ()  # the batches an incremental update recomputed
    found_by: str = ""  # incremental: "change feed" or "service tables" (read by xmin)

    def summary(self) -> str:
        cause = self.reason or (f"found by {self.found_by}" if self.found_by else "")
        why = f" ({cause})" if cause else ""
        return (
            f"facts: {self.mode}{why}, {self.recomputed} batches recomputed,"
            f" {self.written} rows written, {self.deleted} deleted"
        )


def _facts() -> sql.Composed:
    return sql.Identifier(monitoring_schema(), FACTS_TABLE)


def _watermark() -> sql.Composed:
    return sql.Identifier(monitoring_schema(), WATERMARK_TABLE)


def _source(table: str) -> sql.Composed:
    return sql.Identifier(source_schema(), table)


def facts_columns(conn: psycopg.Connection) -> list[str]:
    """The stored table's columns that the facts view also has, in the table's order."""
    rows = conn.execute(
        "select a.attname from pg_catalog.pg_attribute a"
        " join pg_catalog.pg_class c on c.oid = a.attrelid"
        " join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped"
        " and a.attname in (select v.attname from pg_catalog.pg_attribute v"
        "   join pg_catalog.pg_class vc on vc.oid = v.attrelid"
        "   where vc.relnamespace = n.oid and vc.relname = %s"
        "   and v.attnum > 0 and not v.attisdropped)"
        " order by a.attnum",
        (monitoring_schema(), FACTS_TABLE, FACTS_VIEW),
    ).fetchall()
    return [name for (name,) in rows]


def source_deletions(conn: psycopg.Connection) -> dict[str, int]:
    """Rows ever deleted from each service table, as the statistics system counts them."""
    rows = conn.execute(
        "select relname, n_tup_del from pg_catalog.pg_stat_user_tables"
        " where schemaname = %s and relname = any(%s) order by relname",
        (source_schema(), list(SOURCE_TABLES)),
    ).fetchall()
    return {name: int(count) for name, count in rows}


def _written_since(distance: int) -> sql.Composed:
    """A row written by a transaction at most `distance` transactions before this one (the
    caller's transaction has an id: age() counts from it)."""
    return sql.SQL("age(xmin) between 0 and {}").format(sql.Literal(distance))


def changed_batches(conn: psycopg.Connection, distance: int) -> list[int]:
    """Batches with a service row inserted or updated within the last `distance` transactions."""
    written = _written_since(distance)
    arms = [
        sql.SQL("select {} as cj_batch_id from {} where {}").format(
            sql.Identifier(column), _source(table), written
        )
        for table, column in BATCH_KEYED_TABLES.items()
    ]
    events = sql.SQL("(select aggregate_id from {} where {})").format(
        _source(OUTBOX_TABLE), written
    )
    uploads = _source("cj_batch_uploads")
    arms.append(
        sql.SQL(
            "select uploads.id from {} as uploads join {} as events"
            " on events.aggregate_id = uploads.bos_batch_id"
        ).format(uploads, events)
    )
    arms.append(
        sql.SQL(
            "select uploads.id from {} as uploads join {} as events"
            " on events.aggregate_id = uploads.id::text"
        ).format(uploads, events)
    )
    query = sql.SQL(" union ").join(arms)
    return sorted(batch for (batch,) in conn.execute(query))


def shared_tables_changed(conn: psycopg.Connection, distance: int) -> bool:
    written = _written_since(distance)
    query = sql.SQL(" or ").join(
        sql.SQL("exists (select from {} where {})").format(_source(table), written)
        for table in SHARED_TABLES
    )
    return bool(conn.execute(sql.SQL("select ") + query).fetchone()[0])


def _column_list(columns: list[str], table: str | None = None) -> sql.Composed:
    """`a, b, ...`, or `table.a, table.b, ...`."""
    prefix = (table,) if table else ()
    return sql.SQL(", ").join(sql.Identifier(*prefix, name) for name in columns)


def _upsert(conn: psycopg.Connection, columns: list[str], batches: list[int]) -> int:
    """Recompute the facts of `batches` and write the rows that differ."""
    names = _column_list(columns)
    stored = _column_list(columns, FACTS_TABLE)
    fresh = _column_list(columns, "excluded")
    # One batch at a time: a condition on one cj_batch_id reaches every service table's
    # batch index through the views (`offset 0` keeps it a subquery of its own, planned with
    # that condition, instead of a join over every batch).
    statement = sql.SQL(
        "insert into {facts} as {alias} ({names})"
        " select recomputed.* from unnest(%s::integer[]) as scope (cj_batch_id)"
        " cross join lateral (select {names} from {view} as facts"
        " where facts.cj_batch_id = scope.cj_batch_id offset 0) as recomputed"
        " on conflict (cj_batch_id) do update set ({names}) = row({fresh})"
        " where row({stored}) is distinct from row({fresh})"
    ).format(
        facts=_facts(),
        alias=sql.Identifier(FACTS_TABLE),
        names=names,
        view=sql.Identifier(monitoring_schema(), FACTS_VIEW),
        stored=stored,
        fresh=fresh,
    )
    return conn.execute(statement, (batches,)).rowcount


def _rebuild(conn: psycopg.Connection, columns: list[str]) -> int:
    """Recompute every batch's facts and write the rows that differ.

    Set-wise, in three statements: every batch's facts into a temporary table (a `create
    table as` may run its query with parallel workers; an `insert ... select` never does),
    then one hash join with the stored facts that updates the rows that differ, and one that
    inserts the new batches. The temporary table is dropped once they are written (with the
    caller's transaction, should a statement fail). It needs the TEMPORARY privilege on the
    database, which REFRESH ... CONCURRENTLY needs too."""
    names = _column_list(columns)
    stored = _column_list(columns, "facts")
    fresh = _column_list(columns, "fresh")
    recomputed = sql.Identifier("pg_temp", RECOMPUTED_TABLE)
    conn.execute(
        sql.SQL("create temporary table {} as select {} from {}").format(
            recomputed, names, sql.Identifier(monitoring_schema(), FACTS_VIEW)
        )
    )
    updated = conn.execute(
        sql.SQL(
            "update {facts} as facts set ({names}) = row({fresh}) from {recomputed} as fresh"
            " where facts.cj_batch_id = fresh.cj_batch_id"
            " and row({stored}) is distinct from row({fresh})"
        ).format(
            facts=_facts(), names=names, fresh=fresh, recomputed=recomputed, stored=stored
        )
    ).rowcount
    inserted = conn.execute(
        sql.SQL(
            "insert into {facts} ({names}) select {fresh} from {recomputed} as fresh"
            " where not exists (select from {facts} as facts"
            " where facts.cj_batch_id = fresh.cj_batch_id)"
        ).format(facts=_facts(), names=names, fresh=fresh, recomputed=recomputed)
    ).rowcount
    conn.execute(sql.SQL("drop table {}").format(recomputed))
    return updated + inserted


def _delete_gone(conn: psycopg.Connection, batches: list[int] | None) -> int:
    """Remove the facts of batches whose upload is gone: of `batches`, or of any batch."""
    scope = sql.SQL("facts.cj_batch_id = any(%s) and ") if batches is not None else sql.SQL("")
    cursor = conn.execute(
        sql.SQL(
            "delete from {} as facts where {}not exists"
            " (select from {} as uploads where uploads.id = facts.cj_batch_id)"
        ).format(_facts(), scope, _source("cj_batch_uploads")),
        (batches,) if batches is not None else None,
    )
    return cursor.rowcount


def update_batch_facts(conn: psycopg.Connection, *, full: bool = False) -> FactsUpdate:
    """Bring int_batch_facts_incremental up to date; see the module docstring. `conn` must be
    in a transaction, which the caller commits."""
    try:
        conn.execute(sql.SQL("lock table {} in share row exclusive mode").format(_watermark()))
    except psycopg.errors.UndefinedTable:
        raise CjHealthError(
            f"{monitoring_schema()}.{WATERMARK_TABLE} does not exist; run `cj-health build`"
        ) from None
    # An id for this transaction first: age(xmin) counts from it, and the snapshot taken
    # next (the watermark for the next refresh) cannot see anything this one misses.
    current_xid = int(conn.execute("select pg_current_xact_id()::text").fetchone()[0])
    horizon = int(
        conn.execute("select pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()[0]
    )
    deletions = source_deletions(conn)
    stored = conn.execute(
        sql.SQL(
            "select changes_after_xid::text, source_deletions, used_change_feed from {}"
        ).format(_watermark())
    ).fetchone()
    columns = facts_columns(conn)
    if not columns:
        raise CjHealthError(
            f"{monitoring_schema()}.{FACTS_TABLE} does not exist; run `cj-health build`"
        )
    # The feed's rows are taken whenever its queue exists, so that it never piles up; they
    # are trusted alone only when every trigger is in place now and was at the previous
    # refresh (which took every row written before it).
    feed = change_feed.status(conn, count_pending=False)
    fed = change_feed.take(conn) if feed.queue_exists else change_feed.NO_CHANGES

    reason = ""
    found_by = ""
    batches: list[int] | None = None
    if full:
        reason = "requested"
    elif stored is None:
        reason = "first refresh after a build"
    elif feed.complete and stored[2]:
        if fed.everything:
            reason = "anchor references or assessment instructions changed, or a truncate"
        else:
            found_by = "change feed"
            batches = sorted(fed.batch_ids)
    elif stored[1] != deletions:
        reason = "rows were deleted from a service table"
    else:
        distance = current_xid - int(stored[0])
        if distance > MAX_XID_DISTANCE:
            reason = "too many transactions since the last refresh"
        elif shared_tables_changed(conn, distance):
            reason = "anchor references or assessment instructions changed"
        else:
            found_by = "service tables"
            batches = sorted(set(changed_batches(conn, distance)) | fed.batch_ids)

    if batches is None:
        written = _rebuild(conn, columns)
    else:
        written = _upsert(conn, columns, batches) if batches else 0
    # Found by the feed, a deleted batch is among the batches; found by reading the service
    # tables, a delete forced a full rebuild, and any batch may be gone.
    deleted = _delete_gone(conn, batches if found_by == "change feed" else None)
    conn.execute(
        sql.SQL(
            "insert into {table} (changes_after_xid, source_deletions, used_change_feed,"
            " recomputed_at, rebuilt_at) values (%s::text::xid8, %s, %s, now(), now())"
            " on conflict (is_current) do update set"
            " changes_after_xid = excluded.changes_after_xid,"
            " source_deletions = excluded.source_deletions,"
            " used_change_feed = excluded.used_change_feed,"
            " recomputed_at = excluded.recomputed_at,"
            " rebuilt_at = case when %s then excluded.rebuilt_at else {table}.rebuilt_at end"
        ).format(table=_watermark()),
        (str(horizon), Jsonb(deletions), feed.complete, batches is None),
    )
    if batches is None:
        recomputed = conn.execute(sql.SQL("select count(*) from {}").format(_facts())).fetchone()
        return FactsUpdate("full", reason, int(recomputed[0]), written, deleted)
    return FactsUpdate("incremental", "", len(batches), written, deleted, tuple(batches), found_by)
