"""Health over time: after each refresh of cj_batch_health, one point in cj_health_history and
the incidents in cj_batch_incidents brought up to date, in one transaction.

- History: the refresh's `refreshed_at`, the number of batches, alerting and acknowledged
  batches, and JSON objects of batch counts per health_status, per problem code, and per
  problem code among alerting (unacknowledged) codes. A refresh already recorded adds nothing.
- Incidents: one row per batch and problem code while the code is in the batch's `issues`.
  A code seen for the first time opens a row (first_seen_at, and the batch's last activity
  then, for time to detect); a code still there moves last_seen_at; a code gone (or its batch
  gone) sets cleared_at. A code that comes back after clearing opens a new row. When the
  acknowledgement table exists, an open incident takes the latest unexpired acknowledgement
  of its batch and code (or of every code of its batch).
- Retention: rows older than dbt vars `history_retention_days` and (cleared incidents)
  `incident_retention_days` are deleted by the same transaction.

Nothing here copies essay text: ids, codes, counts and times only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from cj_health.db import Database, connect
from cj_health.monitoring_tables import (
    ACKNOWLEDGEMENTS_TABLE,
    HEALTH_VIEW,
    HISTORY_TABLE,
    INCIDENTS_TABLE,
    PROBLEM_CODES_VIEW,
    REFRESH_VIEW,
    acknowledged_issues,
    column_exists,
    qualified,
    relation_exists,
)
from cj_health.settings import retention_days


@dataclass(frozen=True)
class HistoryPoint:
    refreshed_at: datetime
    recorded: bool
    opened: int
    cleared: int


def record_refresh(database: Database) -> HistoryPoint | None:
    """Write the history point and update the incidents for the view as it is now; None when
    the monitoring tables do not exist yet (built before they existed: run `cj-health build`)."""
    with connect(database) as conn:
        if not all(
            relation_exists(conn, name) for name in (HEALTH_VIEW, HISTORY_TABLE, INCIDENTS_TABLE)
        ):
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
    has_acks = column_exists(conn, HEALTH_VIEW, "acknowledged_issues")
    query = sql.SQL(
        """
        with health as (
            select
                cj_batch_id,
                health_status,
                issues,
                is_alerting,
                {acknowledged} as acknowledged_issues
            from {health} as health
        ),

        batch_codes as (
            select
                health.cj_batch_id,
                batch_issue.problem_code,
                health.is_alerting
                and problem_codes.is_alerting
                and not batch_issue.problem_code = any(health.acknowledged_issues) as alerting
            from health
            cross join lateral unnest(health.issues) as batch_issue (problem_code)
            left join {problem_codes} as problem_codes
                on batch_issue.problem_code = problem_codes.problem_code
        ),

        statuses as (
            select health_status, count(*)::integer as batch_count
            from health
            group by health_status
        ),

        codes as (
            select
                problem_code,
                count(distinct cj_batch_id)::integer as batch_count,
                count(distinct cj_batch_id) filter (where alerting)::integer as alerting_count
            from batch_codes
            group by problem_code
        )

        select
            (select count(*)::integer from health),
            (select count(*) filter (where is_alerting)::integer from health),
            (
                select count(*) filter (where cardinality(acknowledged_issues) > 0)::integer
                from health
            ),
            (select coalesce(jsonb_object_agg(health_status, batch_count), '{{}}') from statuses),
            (select coalesce(jsonb_object_agg(problem_code, batch_count), '{{}}') from codes),
            (
                select coalesce(
                    jsonb_object_agg(problem_code, alerting_count)
                        filter (where alerting_count > 0),
                    '{{}}'
                )
                from codes
            )
        """
    ).format(
        acknowledged=acknowledged_issues(conn, "health"),
        health=qualified(HEALTH_VIEW),
        problem_codes=qualified(PROBLEM_CODES_VIEW),
    )
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
            acknowledged if has_acks else None,
            Jsonb(by_status),
            Jsonb(by_code),
            Jsonb(alerting_by_code),
        ),
    )
    return inserted.rowcount == 1


def _update_incidents(conn: psycopg.Connection, seen_at: datetime) -> tuple[int, int]:
    names = {"health": qualified(HEALTH_VIEW), "incidents": qualified(INCIDENTS_TABLE)}
    current = sql.SQL(
        "select health.cj_batch_id, batch_issue.problem_code, health.last_activity_at"
        " from {health} as health"
        " cross join lateral unnest(health.issues) as batch_issue (problem_code)"
    ).format(**names)
    cleared = conn.execute(
        sql.SQL(
            "with current_problems as ({current})"
            " update {incidents} as incident set cleared_at = %(seen)s"
            " where incident.cleared_at is null and incident.last_seen_at <= %(seen)s"
            " and not exists (select from current_problems as problem"
            "   where problem.cj_batch_id = incident.cj_batch_id"
            "   and problem.problem_code = incident.problem_code)"
        ).format(current=current, **names),
        {"seen": seen_at},
    ).rowcount
    conn.execute(
        sql.SQL(
            "with current_problems as ({current})"
            " update {incidents} as incident set last_seen_at = %(seen)s"
            " from current_problems as problem"
            " where incident.cleared_at is null and incident.last_seen_at < %(seen)s"
            " and problem.cj_batch_id = incident.cj_batch_id"
            " and problem.problem_code = incident.problem_code"
        ).format(current=current, **names),
        {"seen": seen_at},
    )
    opened = conn.execute(
        sql.SQL(
            "with current_problems as ({current})"
            " insert into {incidents}"
            " (cj_batch_id, problem_code, first_seen_at, last_seen_at, batch_last_activity_at)"
            " select problem.cj_batch_id, problem.problem_code, %(seen)s, %(seen)s,"
            "  problem.last_activity_at"
            " from current_problems as problem"
            " on conflict (cj_batch_id, problem_code) where cleared_at is null do nothing"
        ).format(current=current, **names),
        {"seen": seen_at},
    ).rowcount
    if relation_exists(conn, ACKNOWLEDGEMENTS_TABLE):
        _copy_acknowledgements(conn, seen_at)
    return opened, cleared


def _copy_acknowledgements(conn: psycopg.Connection, seen_at: datetime) -> None:
    conn.execute(
        sql.SQL(
            "with latest as ("
            "   select distinct on (incident.incident_id) incident.incident_id,"
            "   acknowledgement.acknowledged_at, acknowledgement.acknowledged_by"
            "   from {incidents} as incident"
            "   inner join {acknowledgements} as acknowledgement"
            "   on acknowledgement.cj_batch_id = incident.cj_batch_id"
            "   and (acknowledgement.problem_code is null"
            "        or acknowledgement.problem_code = incident.problem_code)"
            "   where incident.cleared_at is null"
            "   and acknowledgement.acknowledged_at <= %(seen)s"
            "   and (acknowledgement.expires_at is null or acknowledgement.expires_at > %(seen)s)"
            "   order by incident.incident_id, acknowledgement.acknowledged_at desc"
            " )"
            " update {incidents} as incident"
            " set acknowledged_at = latest.acknowledged_at,"
            " acknowledged_by = latest.acknowledged_by"
            " from latest"
            " where incident.incident_id = latest.incident_id"
            " and incident.acknowledged_at is distinct from latest.acknowledged_at"
        ).format(
            incidents=qualified(INCIDENTS_TABLE), acknowledgements=qualified(ACKNOWLEDGEMENTS_TABLE)
        ),
        {"seen": seen_at},
    )


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
