"""Fingerprints of the service rows: how a refresh without the change feed finds exactly the
batches whose rows changed since the previous refresh, deletes, moves and truncates included.

A fingerprint is a row count and a 64-bit hash: the XOR of one hash per row version, of its
physical place (`ctid`), the transaction that wrote it (`xmin`) and its table. Kept per batch
over the five batch-keyed service tables (a row counts for the batch its batch column names),
per `aggregate_id` for the outbox, and per table for the anchor references and the
assessment instructions. One scan of the service tables computes them all
(`create temporary table ... as`, which may use parallel workers); the stored ones, in
`cj_source_fingerprints` (monitoring schema), are from the previous refresh.

Why it is exact. Both refreshes read in one repeatable-read snapshot each, S1 then S2. A row
version that S2 sees and S1 did not was written by a transaction S1 did not see, so its xmin
differs from that of every version S1 saw; so does every version a write creates (an update
writes a new version, in another place). So every insert, update, delete, move (the old
batch loses a version, the new one gains one) and truncate changes the set of versions of
each batch it touches, and with it the count or the hash, except by a collision of 64-bit
hashes (about 2^-64 per changed batch). A version that only moved on disk (VACUUM FULL,
CLUSTER) or was frozen keeps nothing but costs a needless recomputation: freezing keeps the
raw xmin since PostgreSQL 9.4. The xmin is a 32-bit counter: a refresh after 2^30
transactions rebuilds every batch instead (cj_health.batch_facts). Statistics
(pg_stat_user_tables) play no part: they are neither transactional nor kept over a crash.

The new fingerprints are written in the refresh's transaction (only the ones that differ), so
they always describe the snapshot the stored facts were computed from.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from cj_health.change_feed import (
    BATCH_KEYED_TABLES,
    OUTBOX_COLUMN,
    OUTBOX_TABLE,
    SHARED_TABLES,
    uploads_of_aggregates,
)
from cj_health.db import monitoring_schema, source_schema

FINGERPRINT_TABLE = "cj_source_fingerprints"
# This refresh's fingerprints, a temporary table of the refresh transaction.
CURRENT_TABLE = "cj_source_fingerprints_now"
# `source` of the per-batch fingerprints; the others are named by their table.
BATCH_SOURCE = "batch"
# Each table's number, mixed into its rows' hashes (a row of one table never cancels a row
# of another in the same batch).
TABLE_NUMBERS = {
    table: number
    for number, table in enumerate((*BATCH_KEYED_TABLES, OUTBOX_TABLE, *SHARED_TABLES))
}


def _stored() -> sql.Composed:
    return sql.Identifier(monitoring_schema(), FINGERPRINT_TABLE)


def _current() -> sql.Composed:
    return sql.Identifier("pg_temp", CURRENT_TABLE)


def _row_hash(table: str) -> sql.Composed:
    """The hash of one row version of `table`: its place, its writer and its table."""
    # int8in(xidout(xmin)): the xid as a number without two text conversions of a cast
    return sql.SQL(
        "pg_catalog.hashtidextended(ctid,"
        " pg_catalog.int8in(pg_catalog.xidout(xmin)) + {} * 4294967296)"
    ).format(sql.Literal(TABLE_NUMBERS[table]))


def _source(table: str) -> sql.Composed:
    return sql.Identifier(source_schema(), table)


def fingerprint_query() -> sql.Composed:
    """Every fingerprint of the service tables as they are now: (source, source_key,
    row_count, row_hash). The batch-keyed tables' rows go through one aggregate, so that
    their scans share the parallel workers."""
    batch_rows = sql.SQL(" union all ").join(
        sql.SQL("select {column} as cj_batch_id, {hash} as row_hash from {table}").format(
            column=sql.Identifier(column), hash=_row_hash(table), table=_source(table)
        )
        for table, column in BATCH_KEYED_TABLES.items()
    )
    parts = [
        sql.SQL(
            "select {source}::text collate \"C\", cj_batch_id::text collate \"C\", count(*),"
            " bit_xor(row_hash)"
            " from ({rows}) as batch_rows group by cj_batch_id"
        ).format(source=sql.Literal(BATCH_SOURCE), rows=batch_rows),
        sql.SQL(
            "select {source}::text collate \"C\", coalesce({column}, '')::text collate \"C\","
            " count(*), bit_xor({hash})"
            " from {table} group by 2"
        ).format(
            source=sql.Literal(OUTBOX_TABLE),
            column=sql.Identifier(OUTBOX_COLUMN),
            hash=_row_hash(OUTBOX_TABLE),
            table=_source(OUTBOX_TABLE),
        ),
    ]
    parts += [
        sql.SQL(
            "select {source}::text collate \"C\", ''::text collate \"C\", count(*),"
            " coalesce(bit_xor({hash}), 0) from {table}"
        ).format(source=sql.Literal(table), hash=_row_hash(table), table=_source(table))
        for table in SHARED_TABLES
    ]
    return sql.SQL(" union all ").join(parts)


def compute(conn: psycopg.Connection) -> None:
    """This refresh's fingerprints into the temporary table (inside the caller's
    transaction), analyzed: with its row count known, `store` compares by hash joins instead
    of sorting the keys."""
    conn.execute(
        sql.SQL(
            "create temporary table {} (source, source_key, row_count, row_hash) as {}"
        ).format(_current(), fingerprint_query())
    )
    conn.execute(sql.SQL("analyze {}").format(_current()))


def store(conn: psycopg.Connection) -> set[tuple[str, str]]:
    """Replace the stored fingerprints that differ from this refresh's (and drop the
    temporary table); returns the (source, source_key) of every one that differed, appeared
    or vanished."""
    deleted = conn.execute(
        sql.SQL(
            "delete from {stored} as stored where not exists (select from {current} as now"
            " where now.source = stored.source and now.source_key = stored.source_key"
            " and now.row_count = stored.row_count and now.row_hash = stored.row_hash)"
            " returning stored.source, stored.source_key"
        ).format(stored=_stored(), current=_current())
    ).fetchall()
    inserted = conn.execute(
        sql.SQL(
            "insert into {stored} (source, source_key, row_count, row_hash)"
            " select now.source, now.source_key, now.row_count, now.row_hash"
            " from {current} as now where not exists (select from {stored} as stored"
            " where stored.source = now.source and stored.source_key = now.source_key)"
            " returning source, source_key"
        ).format(stored=_stored(), current=_current())
    ).fetchall()
    conn.execute(sql.SQL("drop table {}").format(_current()))
    return {(source, key) for source, key in deleted} | {(source, key) for source, key in inserted}


@dataclass(frozen=True)
class Affected:
    """What changed fingerprints say about the batches."""

    batch_ids: frozenset[int]
    shared: bool  # an anchor reference or assessment instruction changed: every batch


def affected(conn: psycopg.Connection, changed: set[tuple[str, str]]) -> Affected:
    batches = {int(key) for source, key in changed if source == BATCH_SOURCE}
    aggregates = sorted(key for source, key in changed if source == OUTBOX_TABLE)
    if aggregates:
        batches |= uploads_of_aggregates(conn, aggregates)
    shared = any(source in SHARED_TABLES for source, _ in changed)
    return Affected(frozenset(batches), shared)
