"""Shared by test_reader_role.py and test_grafana.py: a monitored ENG5 database, and a login
in cj_health_reader to read it as Grafana would.

Roles are cluster-wide. `cj_health_reader` itself is created by dbt (macros/grants.sql) and
left in place; each test login is uniquely named and dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from conftest import cloned_database
from psycopg import conninfo, sql

from cj_health.build import BUILD_ARGS
from cj_health.db import Database, connect, monitoring_schema
from cj_health.dbt_runner import run_dbt
from cj_health.eng5.replay import replay_incident
from cj_health.eng5.runner import execute_batch
from cj_health.monitoring_tables import MONITORING_TABLES

READER_ROLE = "cj_health_reader"
# The marts, all granted to the reader: the health view, its one-row refresh time, the alert
# view, the batches' problem codes with their acknowledgements and the static list of problem
# codes (no service data), and the acknowledgement table (read only). Staging and
# intermediate views are never granted.
MONITORING_VIEWS = (
    "cj_batch_health",
    "cj_batch_health_refresh",
    "cj_batch_alerts",
    "cj_batch_issues",
    "cj_problem_codes",
    "cj_batch_acknowledgements",
)
# The monitoring's own tables over time (history, incidents, runs; no service data), granted
# to the reader too.
MONITORING_RELATIONS = (*MONITORING_VIEWS, *MONITORING_TABLES)


@dataclass(frozen=True)
class MonitoredDatabase:
    database: Database
    healthy_batch_ids: tuple[int, ...]
    incident_batch_id: int


def build_monitored_database(database: Database, out_dir: Path) -> MonitoredDatabase:
    """Two healthy ENG5 batches (the dev defaults) and the Batch 20 incident replayed with its
    counts (`cj-health eng5 replay-incident`), then the seed and the models built as the first
    step of `cj-health build` does (the dbt tests, its second step, fail on the incident on
    purpose and are not needed here)."""
    healthy = tuple(
        execute_batch(database, seed=seed, out_dir=out_dir / f"seed{seed}").cj_batch_id
        for seed in (1, 2)
    )
    incident = replay_incident(database)
    result = run_dbt(database, BUILD_ARGS)
    assert result.ok, result.output[-3000:]
    return MonitoredDatabase(database, healthy, incident.cj_batch_id)


@contextmanager
def monitored_database(
    admin: Database, template: str, out_dir: Path
) -> Iterator[MonitoredDatabase]:
    """A new database cloned from the CJ schema template, built by build_monitored_database,
    dropped afterwards (for module-scoped fixtures: the ENG5 runs and dbt take a while)."""
    with cloned_database(admin, template) as database:
        yield build_monitored_database(database, out_dir)


def grafana_connect(login: Database) -> psycopg.Connection:
    """A connection as Grafana's datasource opens one: the URL alone, so the search_path is
    the login's role setting (cj_health.db.connect would set the source schema instead)."""
    return psycopg.connect(login.url, connect_timeout=10, application_name="grafana-test")


@contextmanager
def reader_login(database: Database, schema: str | None = None) -> Iterator[Database]:
    """A new LOGIN role granted cj_health_reader, as a Database to connect to; dropped after.
    Like Grafana's login (docs/runbook.md, "Grant Grafana its reader") its search_path in this
    database is the monitoring schema (`schema`, default CJ_MONITORING_SCHEMA), which the
    Grafana SQL does not name. Both test servers trust local connections, so the login needs
    no password."""
    name = f"cjt_reader_{uuid.uuid4().hex[:10]}"
    with connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("grant {} to {}").format(sql.Identifier(READER_ROLE), sql.Identifier(name))
        )
        conn.execute(
            sql.SQL("alter role {} in database {} set search_path = {}").format(
                sql.Identifier(name),
                sql.Identifier(conn.info.dbname),
                sql.Identifier(schema or monitoring_schema()),
            )
        )
    params = conninfo.conninfo_to_dict(database.url)
    params.pop("password", None)
    params["user"] = name
    try:
        yield Database(conninfo.make_conninfo(**params), database.embedded)
    finally:
        with connect(database, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))
