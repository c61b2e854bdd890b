"""The stored per-batch facts: int_batch_facts kept as the table int_batch_facts_incremental,
brought up to date at each refresh for the batches whose rows changed, exactly: after any
committed change and one refresh, the stored facts equal int_batch_facts row for row.

A batch's facts change only when one of its service rows is inserted, updated, deleted or
moved to another batch, when an outbox row of its aggregate changes, or when an anchor
reference or assessment instruction changes (these decide many batches' facts: every batch
is recomputed). The refresh finds the changed batches one of two ways:

- From the change feed (cj_health.change_feed), when it is trusted: its triggers name the
  batches. The feed is trusted only when its continuity is proven: every trigger is in
  place and recording (cj_health.change_feed.inspect), and the catalog signature and the
  loss counter are what the previous refresh stored, and every transaction running when
  either last changed has ended (the refresh's snapshot is past the transaction id stored
  then). Any install, removal, reinstall, disable or enable, grant or revoke, or a write a
  trigger could not record, makes the next refresh read the service tables instead and say
  why (`feed_note`, shown by `cj-health status`).
- Otherwise from the row fingerprints (cj_health.source_fingerprints): every service row is
  read once, and the batches whose fingerprint differs from the stored one are recomputed.
  When the stored fingerprints are out of date (the refresh before used the feed), every
  batch is recomputed, and the fingerprints are stored again.

Every batch is also recomputed when the feed says a shared table changed or a table was
truncated (in any branch: the marker is never dropped), when there is no watermark row (the
first refresh after `dbt run`, which clears it), after 2^30 transactions, and on
`cj-health refresh --full`. The facts of a batch whose upload is gone are deleted. Only rows
whose facts differ are written, so an unchanged batch is an unchanged row.

The refresh is one REPEATABLE READ transaction (`cj_health.build.refresh_in_transaction`)
that takes the watermark table's lock before its snapshot (`begin_refresh`): the queue rows
it takes, the fingerprints it stores and the facts it computes all describe that one
snapshot, and the lock makes it the one writer of the facts (`dbt run` takes the same lock).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from cj_health import change_feed, source_fingerprints
from cj_health.db import monitoring_schema, source_schema
from cj_health.errors import CjHealthError

FACTS_VIEW = "int_batch_facts"
FACTS_TABLE = "int_batch_facts_incremental"
WATERMARK_TABLE = "cj_batch_facts_watermark"
# A full rebuild's recomputed facts, a temporary table of the refresh transaction.
RECOMPUTED_TABLE = "cj_recomputed_batch_facts"

# Past this many transactions since the last refresh, a 32-bit xmin may have come round
# again: the fingerprints are not trusted.
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
    # incremental: "change feed", or "service tables" (the row fingerprints)
    found_by: str = ""
    feed_note: str = ""  # why the change feed, installed, was not used; "" when it was

    def summary(self) -> str:
        cause = self.reason or (f"found by {self.found_by}" if self.found_by else "")
        why = f" ({cause})" if cause else ""
        note = f"\nchange feed not used: {self.feed_note}" if self.feed_note else ""
        return (
            f"facts: {self.mode}{why}, {self.recomputed} batches recomputed,"
            f" {self.written} rows written, {self.deleted} deleted{note}"
        )


def _facts() -> sql.Composed:
    return sql.Identifier(monitoring_schema(), FACTS_TABLE)


def _watermark() -> sql.Composed:
    return sql.Identifier(monitoring_schema(), WATERMARK_TABLE)


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
        ).format(_facts(), scope, sql.Identifier(source_schema(), "cj_batch_uploads")),
        (batches,) if batches is not None else None,
    )
    return cursor.rowcount


@dataclass(frozen=True)
class Watermark:
    """The row the previous refresh left in cj_batch_facts_watermark."""

    changes_after_xid: int  # the oldest transaction its snapshot could not see
    fingerprints_current: bool  # cj_source_fingerprints describe its snapshot
    feed_signature: str
    feed_losses: int | None
    feed_pending_until: int | None  # the feed is not trusted before this transaction ended
    feed_note: str


def read_watermark(conn: psycopg.Connection) -> Watermark | None:
    row = conn.execute(
        sql.SQL(
            "select changes_after_xid::text, fingerprints_current, feed_signature,"
            " feed_losses, feed_pending_until::text, feed_note from {}"
        ).format(_watermark())
    ).fetchone()
    if row is None:
        return None
    xid, current, signature, losses, pending, note = row
    return Watermark(
        int(xid), bool(current), signature, losses, None if pending is None else int(pending), note
    )


@dataclass(frozen=True)
class FeedTrust:
    """Whether this refresh may take the feed's batches alone, and what to store for the
    next one."""

    trusted: bool
    note: str  # why not, when the feed is installed
    pending_until: int | None


def feed_trust(
    stored: Watermark | None,
    feed: change_feed.FeedState,
    current_xid: int,
    snapshot_xmin: int,
) -> FeedTrust:
    """The feed's continuity since the previous refresh (module docstring). A change of the
    signature or of the loss counter may concern a transaction that is still running (a
    revoke, a trigger that could not record): the feed is trusted again only from the first
    refresh whose snapshot is past every transaction running at the refresh that saw it."""
    changed_signature = stored is None or stored.feed_signature != feed.signature
    changed_losses = stored is None or stored.feed_losses != feed.losses
    if changed_signature or changed_losses:
        pending: int | None = current_xid
    else:
        pending = stored.feed_pending_until
        if pending is not None and snapshot_xmin >= pending:
            pending = None
    if not feed.installed:
        return FeedTrust(False, "", pending)
    if not feed.complete:
        note = feed.summary().removeprefix("change feed: ")
    elif stored is None:
        note = "no earlier refresh to continue from (first refresh after a build)"
    elif changed_signature:
        note = "it was installed, removed, changed or re-granted since the last refresh"
    elif changed_losses:
        lost = (feed.losses or 0) - (stored.feed_losses or 0)
        note = (
            f"its triggers could not record {lost} service statements since the last refresh"
            if lost > 0
            else "its loss counter was reset"
        )
    elif pending is not None:
        note = "transactions older than the change feed's last change are still running"
    else:
        return FeedTrust(True, "", None)
    return FeedTrust(False, note, pending)


def begin_refresh(conn: psycopg.Connection) -> None:
    """The start of the refresh transaction (the caller's, just opened): REPEATABLE READ, and
    the watermark table's lock before the snapshot, so that the snapshot sees everything the
    refresh before this one wrote."""
    conn.execute("set transaction isolation level repeatable read")
    try:
        conn.execute(sql.SQL("lock table {} in share row exclusive mode").format(_watermark()))
    except psycopg.errors.UndefinedTable:
        raise CjHealthError(
            f"{monitoring_schema()}.{WATERMARK_TABLE} does not exist; run `cj-health build`"
        ) from None


def update_batch_facts(conn: psycopg.Connection, *, full: bool = False) -> FactsUpdate:
    """Bring int_batch_facts_incremental up to date; see the module docstring. `conn` must be
    in a transaction started with `begin_refresh`, which the caller commits."""
    (isolation,) = conn.execute("select current_setting('transaction_isolation')").fetchone()
    if isolation != "repeatable read":
        raise CjHealthError("the refresh must run in a transaction started by begin_refresh")
    stored = read_watermark(conn)
    columns = facts_columns(conn)
    if not columns:
        raise CjHealthError(
            f"{monitoring_schema()}.{FACTS_TABLE} does not exist; run `cj-health build`"
        )
    # The feed's rows are taken whenever this role can, so that the queue never piles up;
    # the batches they name are recomputed in any branch.
    feed = change_feed.inspect(conn, count_pending=False)
    fed = change_feed.take(conn) if feed.can_take else change_feed.NO_CHANGES
    # A transaction id only now, after the loss counter was read: every transaction that
    # counted a loss before that read has a smaller id.
    current_xid = int(conn.execute("select pg_current_xact_id()::text").fetchone()[0])
    snapshot_xmin = int(
        conn.execute("select pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()[0]
    )
    trust = feed_trust(stored, feed, current_xid, snapshot_xmin)

    reason = ""
    if full:
        reason = "requested"
    elif stored is None:
        reason = "first refresh after a build"
    elif fed.everything:
        reason = "the change feed says a shared table changed or a table was truncated"
    elif current_xid - stored.changes_after_xid > MAX_XID_DISTANCE:
        reason = "too many transactions since the last refresh"
    elif not trust.trusted and not stored.fingerprints_current:
        reason = "the row fingerprints are out of date (the last refresh used the change feed)"

    fingerprinted = not trust.trusted
    if fingerprinted:
        source_fingerprints.compute(conn)
    found_by = ""
    batches: list[int] | None = None
    if not reason and trust.trusted:
        found_by = "change feed"
        batches = sorted(fed.batch_ids)
    elif fingerprinted:
        changed = source_fingerprints.affected(conn, source_fingerprints.store(conn))
        if not reason and changed.shared:
            reason = "anchor references or assessment instructions changed"
        elif not reason:
            found_by = "service tables"
            batches = sorted(changed.batch_ids | fed.batch_ids)

    if batches is None:
        written = _rebuild(conn, columns)
    else:
        written = _upsert(conn, columns, batches) if batches else 0
    deleted = _delete_gone(conn, batches)
    conn.execute(
        sql.SQL(
            "insert into {table} (changes_after_xid, fingerprints_current, feed_signature,"
            " feed_losses, feed_pending_until, feed_note, recomputed_at, rebuilt_at)"
            " values (%(horizon)s::text::xid8, %(fingerprinted)s, %(signature)s, %(losses)s,"
            " %(pending)s::text::xid8, %(note)s, now(), now())"
            " on conflict (is_current) do update set"
            " changes_after_xid = excluded.changes_after_xid,"
            " fingerprints_current = excluded.fingerprints_current,"
            " feed_signature = excluded.feed_signature,"
            " feed_losses = excluded.feed_losses,"
            " feed_pending_until = excluded.feed_pending_until,"
            " feed_note = excluded.feed_note,"
            " recomputed_at = excluded.recomputed_at,"
            " rebuilt_at = case when %(rebuilt)s then excluded.rebuilt_at"
            " else {table}.rebuilt_at end"
        ).format(table=_watermark()),
        {
            "horizon": str(snapshot_xmin),
            "fingerprinted": fingerprinted,
            "signature": feed.signature,
            "losses": feed.losses,
            "pending": None if trust.pending_until is None else str(trust.pending_until),
            "note": trust.note,
            "rebuilt": batches is None,
        },
    )
    if batches is None:
        recomputed = conn.execute(sql.SQL("select count(*) from {}").format(_facts())).fetchone()
        return FactsUpdate(
            "full", reason, int(recomputed[0]), written, deleted, feed_note=trust.note
        )
    return FactsUpdate(
        "incremental", "", len(batches), written, deleted, tuple(batches), found_by, trust.note
    )
