"""What the refresh tests share: whether the stored facts equal the live definitions, the
health view's rows, and the two ways a database is brought to steady refreshing (with and
without the change feed)."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from cj_health import change_feed
from cj_health.batch_facts import FACTS_TABLE, FACTS_VIEW, FactsUpdate, facts_columns
from cj_health.build import refresh
from cj_health.db import Database, connect, monitoring_schema

# How a refresh finds the changed batches once it is steady: the row fingerprints (no feed),
# or the change feed's triggers.
NO_FEED = "no feed"
FEED = "feed"
MODES = (NO_FEED, FEED)
FOUND_BY = {NO_FEED: "service tables", FEED: "change feed"}


def facts_difference(conn: psycopg.Connection) -> tuple[int, int]:
    """(rows of the live facts, int_batch_facts, missing from the stored facts; stored rows
    the live facts lack): (0, 0) when the stored facts equal a full recomputation."""
    columns = sql.SQL(", ").join(map(sql.Identifier, facts_columns(conn)))
    schema = monitoring_schema()
    view, table = sql.Identifier(schema, FACTS_VIEW), sql.Identifier(schema, FACTS_TABLE)
    missing = conn.execute(
        sql.SQL("select count(*) from (select {c} from {v} except all select {c} from {t}) d")
        .format(c=columns, v=view, t=table)).fetchone()[0]
    extra = conn.execute(
        sql.SQL("select count(*) from (select {c} from {t} except all select {c} from {v}) d")
        .format(c=columns, v=view, t=table)).fetchone()[0]
    return int(missing), int(extra)


def stored_difference(database: Database) -> tuple[int, int]:
    with connect(database) as conn:
        return facts_difference(conn)


def health(database: Database) -> dict[int, dict]:
    """cj_batch_health, batch -> row."""
    with connect(database) as conn, conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            sql.SQL("select * from {} order by cj_batch_id").format(
                sql.Identifier(monitoring_schema(), "cj_batch_health"))
        ).fetchall()
    return {row["cj_batch_id"]: row for row in rows}


def start(database: Database, mode: str) -> FactsUpdate:
    """Bring a built database to steady refreshing in `mode`: without the feed, the first
    refresh after the build; with it, install, the refresh that still reads the service
    tables, and the first that takes the feed (returned)."""
    facts = refresh(database).facts
    if mode == FEED:
        with connect(database, autocommit=True) as conn:
            assert change_feed.install(conn).complete
        assert refresh(database).facts.found_by != "change feed"
        facts = refresh(database).facts
        assert facts.found_by == "change feed", facts.summary()
    return facts
