"""Every `cj-health refresh`, `build` and `check` run (and those `cj-health demo` runs, recorded
the same way), in cj_monitoring_runs: command, start,
finish, exit code and a small JSON summary (counts, failing rule names, batch ids; never
essay text). Grafana's dead man's switch reads it: the last successful run of a scheduled
command older than twice its documented interval (SCHEDULE_MINUTES), or a last run that
failed, alerts.

The row is written once, when the command ends, in one statement: a run killed before that
leaves nothing half-written (and its absence is what the dead man's switch notices). Before
`cj-health build` has created the table there is nowhere to write, and nothing is recorded.
The table's DDL lives in one place, the dbt hook in macros/monitoring_tables.sql.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from cj_health.db import Database, connect, monitoring_schema
from cj_health.errors import EXIT_OK, EXIT_USAGE, CjHealthError, DatabaseUnavailable
from cj_health.monitoring_tables import RUNS_TABLE, relation_exists
from cj_health.settings import retention_days

RECORDED_COMMANDS = ("refresh", "build", "check")
# At most this many failing batch ids in a check's summary.
RECORDED_BATCHES = 50
# The documented schedule (docs/scheduling.md); the Grafana dead man's switch fires when the
# last successful run is older than twice this.
SCHEDULE_MINUTES = {"refresh": 1, "check": 15}
# Exit codes of a run that did its job: 0, or 1 (it found a problem in the data).
SUCCESSFUL_EXIT_CODES = (0, 1)
INTERRUPTED = 130


@dataclass
class Run:
    """One run being recorded: the command sets exit_code and summary before it ends."""

    command: str
    started_at: datetime
    exit_code: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)


@contextmanager
def recorded_run(database: Database, command: str) -> Iterator[Run]:
    """Record the run of `command` when the block ends. A CjHealthError records its exit
    code and one-line message, then propagates; so does any other exception (exit 2)."""
    if command not in RECORDED_COMMANDS:
        raise ValueError(f"not a recorded command: {command}")
    run = Run(command, datetime.now(UTC))
    try:
        yield run
    except CjHealthError as exc:
        run.exit_code = exc.exit_code
        run.summary = {"error": str(exc)}
        raise
    except KeyboardInterrupt:
        run.exit_code = INTERRUPTED
        run.summary = {"error": "interrupted"}
        raise
    except Exception as exc:
        run.exit_code = EXIT_USAGE
        run.summary = {"error": type(exc).__name__}
        raise
    finally:
        if run.exit_code is None:
            run.exit_code = EXIT_OK
        write_run(database, run)


def build_summary(result: Any) -> dict[str, Any]:
    """The summary of a `build` (cj_health.build.BuildResult): names and counts only."""
    return {
        "models_failed": [node.name for node in result.models_failed],
        "tests_passed": result.tests_passed,
        "tests_failed": [node.name for node in result.tests_failed],
        "tests_broken": [node.name for node in result.tests_broken],
    }


def refresh_summary(result: Any) -> dict[str, Any]:
    """The summary of a `refresh` (cj_health.build.RefreshResult)."""
    return {
        "batches": result.batches,
        "alerting": result.alerting,
        "facts_mode": result.facts.mode,
        "facts_recomputed": result.facts.recomputed,
    }


def check_summary(report: Any) -> dict[str, Any]:
    """The summary of a `check` (cj_health.check report): rule names and batch ids."""
    return {
        "rules": len(report.rules),
        "failing_rules": [rule.rule for rule in report.rules if not rule.success],
        "failing_batches": report.failing_batches[:RECORDED_BATCHES],
    }


def write_run(database: Database, run: Run, finished_at: datetime | None = None) -> bool:
    """Insert the run and prune runs older than dbt var `run_retention_days`. False when the
    table does not exist yet or the database cannot take the row (said on stderr after a
    successful command; the command's own outcome stands)."""
    finished = finished_at or datetime.now(UTC)
    table = sql.Identifier(monitoring_schema(), RUNS_TABLE)
    try:
        with connect(database) as conn:
            if not relation_exists(conn, RUNS_TABLE):
                return False
            with conn.transaction():
                conn.execute(
                    sql.SQL(
                        "insert into {} (command, started_at, finished_at, exit_code, summary)"
                        " values (%s, %s, %s, %s, %s)"
                    ).format(table),
                    (run.command, run.started_at, finished, run.exit_code, Jsonb(run.summary)),
                )
                days = retention_days(conn, "run_retention_days")
                if days is not None:
                    conn.execute(
                        sql.SQL(
                            "delete from {} where finished_at < now() - make_interval(days => %s)"
                        ).format(table),
                        (days,),
                    )
    except DatabaseUnavailable:
        return False  # the command has already said so
    except psycopg.Error as exc:
        # A failed command has said why on its one line (a missing privilege stops the record
        # too); its missing row is what the dead man's switch notices.
        if run.exit_code in SUCCESSFUL_EXIT_CODES:
            print(
                f"cj-health: run not recorded in {RUNS_TABLE}: {_first_line(exc)}",
                file=sys.stderr,
            )
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
