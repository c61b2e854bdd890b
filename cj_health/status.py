"""`cj-health status`: the monitoring on one screen.

The target; the age of cj_batch_health; the last run of each recorded command with its exit
code (and whether a scheduled one is overdue: its last successful run older than twice its
interval, the dead man's switch); batches per problem code, alerting and acknowledged; the
open incidents; the change feed, and why the last refresh did not use it. Exit 0 when all is
well, 1 when something alerts (a batch, a stale view, a failed or overdue run, a change-feed
queue that this role cannot take and that therefore grows), 2 when the status cannot be read
(no database, not built yet). Read as the role that refreshes, it needs no privilege on the
service tables or the feed: what it may not read it reports.

It applies no rule of its own: the counts per problem code come from cj_batch_issues and
cj_batch_alerts, an incident's `since` (when the condition began as far as the data tells) and
`first seen` (when the monitoring found it) from cj_batch_incidents, shown the same way as
`cj-health incidents` (cj_health.history.incident_line).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from cj_health import change_feed
from cj_health.batch_facts import read_watermark
from cj_health.db import Database, connect, monitoring_schema
from cj_health.errors import EXIT_OK, EXIT_PROBLEMS_FOUND, CjHealthError
from cj_health.history import INCIDENT_COLUMNS, incident_line
from cj_health.monitoring_tables import (
    ALERTS_VIEW,
    HEALTH_VIEW,
    INCIDENTS_TABLE,
    ISSUES_VIEW,
    MONITORING_TABLES,
    PROBLEM_CODES_VIEW,
    REFRESH_VIEW,
    RUNS_TABLE,
    qualified,
    relation_exists,
)
from cj_health.runs import RECORDED_COMMANDS, SCHEDULE_MINUTES, SUCCESSFUL_EXIT_CODES
from cj_health.text import escape

# The VIEW_STALE alert's threshold (grafana/provisioning/alerting/cj_health_rules.yaml).
VIEW_STALE_MINUTES = 15
SHOWN_INCIDENTS = 20


@dataclass
class StatusReport:
    target: str
    refreshed_at: datetime | None
    view_age_minutes: float | None
    batches: int
    alerting_batches: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    problem_codes: list[dict[str, Any]] = field(default_factory=list)
    open_incidents: list[dict[str, Any]] = field(default_factory=list)
    # Information: without a complete feed the refresh reads the service tables (correct,
    # slower), and says why.
    change_feed: str = ""
    # A problem: the feed's queue is there but this role cannot take it, so it grows.
    change_feed_problem: str = ""

    @property
    def problems(self) -> list[str]:
        """Why the status alerts, one phrase each; empty when all is well."""
        found = []
        if self.change_feed_problem:
            found.append(self.change_feed_problem)
        if self.alerting_batches:
            found.append(f"{self.alerting_batches} batches alerting")
        if self.view_age_minutes is None or self.view_age_minutes > VIEW_STALE_MINUTES:
            found.append(f"{HEALTH_VIEW} not refreshed for {VIEW_STALE_MINUTES} minutes")
        for run in self.runs:
            if run["exit_code"] is not None and run["exit_code"] not in SUCCESSFUL_EXIT_CODES:
                found.append(f"last {run['command']} failed (exit {run['exit_code']})")
            if run["overdue"]:
                found.append(
                    f"no successful {run['command']} for twice its interval"
                    f" ({2 * SCHEDULE_MINUTES[run['command']]} minutes)"
                )
        return found

    @property
    def exit_code(self) -> int:
        return EXIT_PROBLEMS_FOUND if self.problems else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "refreshed_at": _iso(self.refreshed_at),
            "view_age_minutes": _round(self.view_age_minutes),
            "batches": self.batches,
            "alerting_batches": self.alerting_batches,
            "runs": [
                {
                    key: _iso(value) if isinstance(value, datetime) else value
                    for key, value in run.items()
                }
                for run in self.runs
            ],
            "problem_codes": self.problem_codes,
            "open_incidents": [
                {
                    key: _iso(value) if isinstance(value, datetime) else value
                    for key, value in incident.items()
                }
                for incident in self.open_incidents
            ],
            "change_feed": self.change_feed,
            "change_feed_problem": self.change_feed_problem,
            "problems": self.problems,
            "exit_code": self.exit_code,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    def text_lines(self) -> list[str]:
        age = "never" if self.view_age_minutes is None else f"{self.view_age_minutes:.1f} min ago"
        lines = [
            f"target: {self.target}",
            f"view:   {monitoring_schema()}.{HEALTH_VIEW} refreshed {age};"
            f" {self.batches} batches, {self.alerting_batches} alerting",
            self.change_feed,
            "",
            "last runs:",
        ]
        for run in self.runs:
            if run["finished_at"] is None:
                lines.append(f"  {run['command']:<8} never")
                continue
            overdue = "  OVERDUE" if run["overdue"] else ""
            lines.append(
                f"  {run['command']:<8} {_iso(run['finished_at'])}  exit {run['exit_code']}"
                f"{overdue}"
            )
        lines += ["", "problem codes (batches / alerting / acknowledged):"]
        if not self.problem_codes:
            lines.append("  none")
        for code in self.problem_codes:
            lines.append(
                f"  {code['problem_code']:<28} {code['severity']:<8} {code['batches']:>5}"
                f" {code['alerting']:>5} {code['acknowledged']:>5}"
            )
        lines += [
            "",
            f"open incidents ({len(self.open_incidents)}; since: when the condition began as"
            " the data tells, first seen: when the monitoring found it):",
        ]
        for incident in self.open_incidents[:SHOWN_INCIDENTS]:
            lines.append(f"  {incident_line(incident)}")
        more = len(self.open_incidents) - SHOWN_INCIDENTS
        if more > 0:
            lines.append(f"  (+{more} more; --json lists all)")
        verdict = "; ".join(self.problems) if self.problems else "all is well"
        lines += ["", f"status: {verdict}"]
        return [escape(line) for line in lines]  # stored text (role names, codes) escaped


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _round(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


def load_status(database: Database) -> StatusReport:
    """Read the status; CjHealthError (exit 2) when the monitoring is not built."""
    with connect(database) as conn:
        missing = [
            name
            for name in (HEALTH_VIEW, PROBLEM_CODES_VIEW, ISSUES_VIEW, ALERTS_VIEW,
                         *MONITORING_TABLES)
            if not relation_exists(conn, name)
        ]
        if missing:
            raise CjHealthError(
                f"{monitoring_schema()}.{missing[0]} does not exist in {database.display};"
                " run `cj-health build` first"
            )
        try:
            return _read(conn, database)
        except psycopg.errors.ObjectNotInPrerequisiteState:
            raise CjHealthError(
                f"{monitoring_schema()}.{HEALTH_VIEW} was never populated; run `cj-health build`"
            ) from None


def _read(conn: psycopg.Connection, database: Database) -> StatusReport:
    refreshed_at, age, batches, alerting = conn.execute(
        sql.SQL(
            "select refresh.refreshed_at, extract(epoch from now() - refresh.refreshed_at) / 60,"
            " health.batches, health.alerting"
            " from (select count(*) as batches, count(*) filter (where is_alerting) as alerting"
            " from {}) as health"
            " left join (select max(refreshed_at) as refreshed_at from {}) as refresh on true"
        ).format(qualified(HEALTH_VIEW), qualified(REFRESH_VIEW))
    ).fetchone()
    report = StatusReport(
        database.display,
        refreshed_at,
        float(age) if age is not None else None,
        batches,
        alerting,
    )
    report.runs = _runs(conn)
    report.problem_codes = _problem_codes(conn)
    report.open_incidents = _open_incidents(conn)
    report.change_feed, report.change_feed_problem = _change_feed(conn)
    return report


def _change_feed(conn: psycopg.Connection) -> tuple[str, str]:
    """The feed's line (with why the last refresh did not use it) and its problem, if any.
    Never an error: what cannot be read is said."""
    try:
        with conn.transaction():
            state = change_feed.inspect(conn)
    except psycopg.Error as exc:
        message = exc.diag.message_primary or type(exc).__name__
        return f"change feed: cannot be read ({message})", ""
    line = state.summary()
    try:
        with conn.transaction():
            watermark = read_watermark(conn)
    except psycopg.Error:
        watermark = None
    if state.installed and watermark is not None and watermark.feed_note:
        line += f"\n        the last refresh did not use it: {watermark.feed_note}"
    problem = ""
    if state.installed and not state.can_take:
        problem = "the change feed's queue is not taken by this role and grows"
    return line, problem


def _runs(conn: psycopg.Connection) -> list[dict[str, Any]]:
    runs = []
    with conn.cursor(row_factory=dict_row) as cursor:
        for command in RECORDED_COMMANDS:
            last = cursor.execute(
                sql.SQL(
                    "select finished_at, exit_code from {} where command = %s"
                    " order by finished_at desc limit 1"
                ).format(qualified(RUNS_TABLE)),
                (command,),
            ).fetchone() or {"finished_at": None, "exit_code": None}
            success = cursor.execute(
                sql.SQL(
                    "select max(finished_at) as at,"
                    " extract(epoch from now() - max(finished_at)) / 60 as minutes"
                    " from {} where command = %s and exit_code = any(%s)"
                ).format(qualified(RUNS_TABLE)),
                (command, list(SUCCESSFUL_EXIT_CODES)),
            ).fetchone()
            interval = SCHEDULE_MINUTES.get(command)
            overdue = interval is not None and (
                success["minutes"] is None or float(success["minutes"]) > 2 * interval
            )
            runs.append(
                {
                    "command": command,
                    "finished_at": last["finished_at"],
                    "exit_code": last["exit_code"],
                    "last_success_at": success["at"],
                    "overdue": overdue,
                }
            )
    return runs


def _problem_codes(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Per problem code: batches showing it, alerting on it (rows of cj_batch_alerts) and
    with it acknowledged (cj_batch_issues), as dbt built them."""
    query = sql.SQL(
        """
        with issues as (
            select problem_code, severity, severity_rank,
                count(*)::integer as batches,
                (count(*) filter (where is_acknowledged))::integer as acknowledged
            from {issues}
            group by problem_code, severity, severity_rank
        ),

        alerting as (
            select issue, count(distinct cj_batch_id)::integer as alerting
            from {alerts}
            group by issue
        )

        select issues.problem_code, issues.severity, issues.batches,
            coalesce(alerting.alerting, 0) as alerting, issues.acknowledged
        from issues
        left join alerting on issues.problem_code = alerting.issue
        order by issues.severity_rank
        """
    ).format(issues=qualified(ISSUES_VIEW), alerts=qualified(ALERTS_VIEW))
    with conn.cursor(row_factory=dict_row) as cursor:
        return list(cursor.execute(query).fetchall())


def _open_incidents(conn: psycopg.Connection) -> list[dict[str, Any]]:
    query = sql.SQL(
        "select {}, (extract(epoch from now() - first_seen_at) / 60)::float8 as open_minutes"
        " from {} where cleared_at is null"
        " order by first_seen_at, cj_batch_id, problem_code"
    ).format(
        sql.SQL(", ").join(sql.Identifier(column) for column in INCIDENT_COLUMNS),
        qualified(INCIDENTS_TABLE),
    )
    with conn.cursor(row_factory=dict_row) as cursor:
        return list(cursor.execute(query).fetchall())
