"""Health over time: after each refresh of cj_batch_health, one point in cj_health_history and
the incidents in cj_batch_incidents brought up to date, in one transaction; and the
summaries `cj-health history` and `cj-health incidents` print.

The tables' DDL lives in one place, the dbt on-run-start hook (macros/monitoring_tables.sql);
here rows are only written, read and pruned. No rule is applied here either: the rows come
from what dbt built, cj_batch_health (status, alerting), cj_batch_issues (each batch's problem
codes, since when, the acknowledgement accepting each) and cj_batch_alerts (which of them
alert).

- History: the refresh's `refreshed_at`, the number of batches, alerting and acknowledged
  batches, and JSON objects of batch counts per health_status, per problem code, and per
  problem code among the rows of cj_batch_alerts. A refresh already recorded adds nothing.
- Incidents: one row per batch (cj_batch_id and bos_batch_id) and problem code while the code
  is in the batch's `issues`. A code seen for the first time opens a row: `since` (when the
  condition began as far as the data tells, the same as cj_batch_alerts.since),
  `first_seen_at` (the refresh that saw it first) and the batch's last activity then; a code
  still there moves last_seen_at; a code gone, its batch gone, or its CJ batch id now naming
  another batch (another bos_batch_id: a reseed) sets cleared_at. A code that comes back
  after clearing opens a new row. Every refresh sets acknowledged_by/at of each open incident
  to the acknowledgement that accepts it now, and clears them when none does (`unack`, expiry).
- Retention: rows older than dbt vars `history_retention_days` and (cleared incidents)
  `incident_retention_days` are deleted by the same transaction.

Nothing here copies essay text: ids, codes, counts, times and who acknowledged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cj_health.db import Database, connect
from cj_health.monitoring_tables import (
    ALERTS_VIEW,
    HEALTH_VIEW,
    HISTORY_TABLE,
    INCIDENTS_TABLE,
    ISSUES_VIEW,
    REFRESH_VIEW,
    qualified,
    relation_exists,
    require_relations,
)
from cj_health.settings import retention_days
from cj_health.text import escape

_NAMES = {
    "health": qualified(HEALTH_VIEW),
    "issues": qualified(ISSUES_VIEW),
    "alerts": qualified(ALERTS_VIEW),
    "incidents": qualified(INCIDENTS_TABLE),
    "history": qualified(HISTORY_TABLE),
}


@dataclass(frozen=True)
class HistoryPoint:
    refreshed_at: datetime
    recorded: bool
    opened: int
    cleared: int


def record_refresh(database: Database) -> HistoryPoint | None:
    """Write the history point and update the incidents for the view as it is now; None when
    the monitoring tables or models do not exist yet (run `cj-health build`)."""
    with connect(database) as conn:
        needed = (HEALTH_VIEW, ISSUES_VIEW, ALERTS_VIEW, HISTORY_TABLE, INCIDENTS_TABLE)
        if not all(relation_exists(conn, name) for name in needed):
            return None
        with conn.transaction():
            # Two refreshes finishing at once: one writes after the other, never interleaved.
            conn.execute(
                sql.SQL("lock table {} in share row exclusive mode").format(
                    qualified(INCIDENTS_TABLE)
                )
            )
            seen_at = _refreshed_at(conn)
            recorded = _write_point(conn, seen_at)
            opened = cleared = 0
            if recorded:
                opened, cleared = _update_incidents(conn, seen_at)
            _sync_acknowledgements(conn)
            _prune(conn)
    return HistoryPoint(seen_at, recorded, opened, cleared)


def _refreshed_at(conn: psycopg.Connection) -> datetime:
    if not relation_exists(conn, REFRESH_VIEW):
        return conn.execute("select now()").fetchone()[0]
    row = conn.execute(
        sql.SQL("select coalesce(max(refreshed_at), now()) from {}").format(qualified(REFRESH_VIEW))
    ).fetchone()
    return row[0]


def _write_point(conn: psycopg.Connection, seen_at: datetime) -> bool:
    query = sql.SQL(
        """
        select
            (select count(*)::integer from {health}),
            (select count(*) filter (where is_alerting)::integer from {health}),
            (
                select count(*) filter (where cardinality(acknowledged_issues) > 0)::integer
                from {health}
            ),
            (
                select coalesce(jsonb_object_agg(health_status, batch_count), '{{}}')
                from (
                    select health_status, count(*)::integer as batch_count
                    from {health} group by health_status
                ) as statuses
            ),
            (
                select coalesce(jsonb_object_agg(problem_code, batch_count), '{{}}')
                from (
                    select problem_code, count(distinct cj_batch_id)::integer as batch_count
                    from {issues} group by problem_code
                ) as codes
            ),
            (
                select coalesce(jsonb_object_agg(issue, batch_count), '{{}}')
                from (
                    select issue, count(distinct cj_batch_id)::integer as batch_count
                    from {alerts} group by issue
                ) as alerting
            )
        """
    ).format(**_NAMES)
    batches, alerting, acknowledged, by_status, by_code, alerting_by_code = conn.execute(
        query
    ).fetchone()
    inserted = conn.execute(
        sql.SQL(
            "insert into {} (refreshed_at, batch_count, alerting_count, acknowledged_count,"
            " batches_by_health_status, batches_by_problem_code, alerting_by_problem_code)"
            " values (%s, %s, %s, %s, %s, %s, %s)"
            " on conflict (refreshed_at) do nothing"
        ).format(qualified(HISTORY_TABLE)),
        (
            seen_at,
            batches,
            alerting,
            acknowledged,
            Jsonb(by_status),
            Jsonb(by_code),
            Jsonb(alerting_by_code),
        ),
    )
    return inserted.rowcount == 1


def _update_incidents(conn: psycopg.Connection, seen_at: datetime) -> tuple[int, int]:
    # An open incident continues only for the same batch: same CJ batch id, same BOS batch
    # id, same code. Anything else (the code gone, the batch gone or replaced) clears it.
    same_problem = sql.SQL(
        "problem.cj_batch_id = incident.cj_batch_id"
        " and problem.bos_batch_id = incident.bos_batch_id"
        " and problem.problem_code = incident.problem_code"
    )
    cleared = conn.execute(
        sql.SQL(
            "update {incidents} as incident set cleared_at = %(seen)s"
            " where incident.cleared_at is null and incident.last_seen_at <= %(seen)s"
            " and not exists (select from {issues} as problem where {same})"
        ).format(same=same_problem, **_NAMES),
        {"seen": seen_at},
    ).rowcount
    conn.execute(
        sql.SQL(
            "update {incidents} as incident set last_seen_at = %(seen)s"
            " from {issues} as problem"
            " where incident.cleared_at is null and incident.last_seen_at < %(seen)s"
            " and {same}"
        ).format(same=same_problem, **_NAMES),
        {"seen": seen_at},
    )
    opened = conn.execute(
        sql.SQL(
            "insert into {incidents} (cj_batch_id, bos_batch_id, problem_code, since,"
            " first_seen_at, last_seen_at, batch_last_activity_at)"
            " select problem.cj_batch_id, problem.bos_batch_id, problem.problem_code,"
            "  problem.since, %(seen)s, %(seen)s, problem.last_activity_at"
            " from {issues} as problem"
            " on conflict (cj_batch_id, problem_code) where cleared_at is null do nothing"
        ).format(**_NAMES),
        {"seen": seen_at},
    ).rowcount
    return opened, cleared


def _sync_acknowledgements(conn: psycopg.Connection) -> None:
    """Each open incident shows the acknowledgement that accepts its problem now
    (cj_batch_issues), and none once it is removed or expired."""
    conn.execute(
        sql.SQL(
            "update {incidents} as incident"
            " set acknowledged_at = problem.acknowledged_at,"
            " acknowledged_by = problem.acknowledged_by"
            " from {incidents} as open_incident"
            " left join {issues} as problem"
            " on problem.cj_batch_id = open_incident.cj_batch_id"
            " and problem.bos_batch_id = open_incident.bos_batch_id"
            " and problem.problem_code = open_incident.problem_code"
            " where incident.incident_id = open_incident.incident_id"
            " and incident.cleared_at is null"
            " and (incident.acknowledged_at is distinct from problem.acknowledged_at"
            "  or incident.acknowledged_by is distinct from problem.acknowledged_by)"
        ).format(**_NAMES)
    )


def close_all_incidents(conn: psycopg.Connection) -> int:
    """Clear every open incident now, in the caller's transaction: what a reset that removes
    every batch (`eng5 reset`, the demo) does, so that a new batch given a reused CJ batch id
    opens incidents of its own. 0 when the table does not exist yet."""
    if not relation_exists(conn, INCIDENTS_TABLE):
        return 0
    return conn.execute(
        sql.SQL(
            "update {} set cleared_at = greatest(now(), first_seen_at)"
            " where cleared_at is null"
        ).format(qualified(INCIDENTS_TABLE))
    ).rowcount


# table, the time its rows age by, the retention setting (cleared incidents only: an open
# incident has no cleared_at and is kept however old).
_RETENTION = (
    (HISTORY_TABLE, "refreshed_at", "history_retention_days"),
    (INCIDENTS_TABLE, "cleared_at", "incident_retention_days"),
)


def _prune(conn: psycopg.Connection) -> None:
    for table, column, setting in _RETENTION:
        days = retention_days(conn, setting)
        if days is None:
            continue
        conn.execute(
            sql.SQL("delete from {} where {} < now() - make_interval(days => %s)").format(
                qualified(table), sql.Identifier(column)
            ),
            (days,),
        )


# --- reading: `cj-health history` and `cj-health incidents` ---------------------------------

INCIDENT_COLUMNS = (
    "incident_id",
    "cj_batch_id",
    "bos_batch_id",
    "problem_code",
    "since",
    "first_seen_at",
    "last_seen_at",
    "cleared_at",
    "acknowledged_at",
    "acknowledged_by",
)
SHOWN_ROWS = 50


def _iso(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


def incident_line(incident: dict[str, Any]) -> str:
    """One incident for the terminal, the same in `status` and `incidents`: `since` is when
    the condition began as far as the data tells (e.g. the batch's last activity), `first
    seen` the refresh that found it."""
    since = _iso(incident["since"]) or "unknown"
    ended = (
        f", cleared {_iso(incident['cleared_at'])}" if incident["cleared_at"] is not None else ""
    )
    acknowledged = (
        f", acknowledged by {incident['acknowledged_by']}"
        if incident["acknowledged_at"] is not None
        else ""
    )
    return escape(
        f"batch {incident['cj_batch_id']:<6} {incident['problem_code']:<28}"
        f" since {since}, first seen {_iso(incident['first_seen_at'])}{ended}{acknowledged}"
    )


def load_incidents(
    database: Database, *, open_only: bool = False, since: timedelta | None = None
) -> list[dict[str, Any]]:
    """Incidents, open ones first, then by first_seen_at (newest first); `since`: only those
    open now or cleared within that time."""
    query = sql.SQL("select {} from {} where true").format(
        sql.SQL(", ").join(sql.Identifier(column) for column in INCIDENT_COLUMNS),
        qualified(INCIDENTS_TABLE),
    )
    params: dict[str, object] = {}
    if open_only:
        query += sql.SQL(" and cleared_at is null")
    if since is not None:
        query += sql.SQL(" and (cleared_at is null or cleared_at >= now() - %(since)s)")
        params["since"] = since
    query += sql.SQL(
        " order by cleared_at is not null, first_seen_at desc, cj_batch_id, problem_code"
    )
    with connect(database) as conn:
        require_relations(conn, database, INCIDENTS_TABLE)
        return list(conn.cursor(row_factory=dict_row).execute(query, params).fetchall())


def incidents_json(incidents: list[dict[str, Any]]) -> str:
    """Ids, codes, times and who acknowledged: nothing else."""
    return json.dumps(
        [{key: _iso(value) for key, value in row.items()} for row in incidents],
        indent=2,
        sort_keys=True,
    )


def incidents_lines(incidents: list[dict[str, Any]]) -> list[str]:
    if not incidents:
        return ["no incidents"]
    open_count = sum(1 for row in incidents if row["cleared_at"] is None)
    lines = [f"incidents: {open_count} open, {len(incidents) - open_count} cleared"]
    lines += [f"  {incident_line(row)}" for row in incidents[:SHOWN_ROWS]]
    if len(incidents) > SHOWN_ROWS:
        lines.append(f"  (+{len(incidents) - SHOWN_ROWS} more; --json lists all)")
    return lines


@dataclass
class HistorySummary:
    """Per day (UTC) and problem code: the most batches showing the code and alerting on it
    at any refresh that day, and the incidents opened; and the codes over the whole window,
    most frequent first (incidents opened, then batches)."""

    since: datetime
    points: int
    days: list[dict[str, Any]] = field(default_factory=list)
    codes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": _iso(self.since),
            "points": self.points,
            "days": [{key: _iso(value) for key, value in row.items()} for row in self.days],
            "codes": self.codes,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    def text_lines(self) -> list[str]:
        lines = [f"health history since {_iso(self.since)} ({self.points} refreshes)", ""]
        lines.append("most frequent problem codes (incidents opened / batches / peak batches):")
        if not self.codes:
            lines.append("  none")
        for code in self.codes:
            lines.append(
                f"  {code['problem_code']:<28} {code['incidents_opened']:>5}"
                f" {code['batches']:>5} {code['peak_batches']:>5}"
            )
        lines += ["", "per day (UTC): peak batches / peak alerting / incidents opened:"]
        if not self.days:
            lines.append("  none")
        for row in self.days:
            lines.append(
                f"  {_iso(row['day'])} {row['problem_code']:<28}"
                f" {row['peak_batches']:>5} {row['peak_alerting']:>5}"
                f" {row['incidents_opened']:>5}"
            )
        return [escape(line) for line in lines]


def load_history(database: Database, since: timedelta) -> HistorySummary:
    """The history of the last `since` (cj_health_history and cj_batch_incidents)."""
    with connect(database) as conn:
        require_relations(conn, database, HISTORY_TABLE, INCIDENTS_TABLE)
        start, points = conn.execute(
            sql.SQL(
                "select now() - %(since)s,"
                " (select count(*)::integer from {history}"
                "  where refreshed_at >= now() - %(since)s)"
            ).format(**_NAMES),
            {"since": since},
        ).fetchone()
        cursor = conn.cursor(row_factory=dict_row)
        days = cursor.execute(
            sql.SQL(
                """
                with points as (
                    select
                        (history.refreshed_at at time zone 'UTC')::date as day,
                        code.problem_code,
                        code.batches::integer as batches,
                        coalesce(
                            (history.alerting_by_problem_code ->> code.problem_code)::integer, 0
                        ) as alerting
                    from {history} as history
                    cross join lateral jsonb_each_text(history.batches_by_problem_code)
                        as code (problem_code, batches)
                    where history.refreshed_at >= %(start)s
                ),

                per_day as (
                    select day, problem_code, max(batches) as peak_batches,
                        max(alerting) as peak_alerting
                    from points
                    group by day, problem_code
                ),

                opened as (
                    select (first_seen_at at time zone 'UTC')::date as day, problem_code,
                        count(*)::integer as incidents_opened
                    from {incidents}
                    where first_seen_at >= %(start)s
                    group by 1, 2
                )

                select
                    coalesce(per_day.day, opened.day) as day,
                    coalesce(per_day.problem_code, opened.problem_code) as problem_code,
                    coalesce(per_day.peak_batches, 0) as peak_batches,
                    coalesce(per_day.peak_alerting, 0) as peak_alerting,
                    coalesce(opened.incidents_opened, 0) as incidents_opened
                from per_day
                full join opened
                    on per_day.day = opened.day and per_day.problem_code = opened.problem_code
                order by 1, 2
                """
            ).format(**_NAMES),
            {"start": start},
        ).fetchall()
        codes = cursor.execute(
            sql.SQL(
                """
                with opened as (
                    select problem_code, count(*)::integer as incidents_opened,
                        count(distinct (cj_batch_id, bos_batch_id))::integer as batches
                    from {incidents}
                    where first_seen_at >= %(start)s
                    group by problem_code
                ),

                peaks as (
                    select code.problem_code, max(code.batches::integer) as peak_batches
                    from {history} as history
                    cross join lateral jsonb_each_text(history.batches_by_problem_code)
                        as code (problem_code, batches)
                    where history.refreshed_at >= %(start)s
                    group by code.problem_code
                )

                select
                    coalesce(opened.problem_code, peaks.problem_code) as problem_code,
                    coalesce(opened.incidents_opened, 0) as incidents_opened,
                    coalesce(opened.batches, 0) as batches,
                    coalesce(peaks.peak_batches, 0) as peak_batches
                from opened
                full join peaks on opened.problem_code = peaks.problem_code
                order by 2 desc, 3 desc, 4 desc, 1
                """
            ).format(**_NAMES),
            {"start": start},
        ).fetchall()
    return HistorySummary(start, points, list(days), list(codes))
