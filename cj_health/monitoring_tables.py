"""The relations of the monitoring schema, one constant per name, and whether a database has
them yet: the dbt models the tool reads, and the monitoring's own tables. Their DDL lives in
one place, the dbt on-run-start hooks (macros/monitoring_tables.sql,
macros/acknowledgements.sql); Python only reads and writes rows."""

from __future__ import annotations

import psycopg
from psycopg import sql

from cj_health.db import Database, monitoring_schema
from cj_health.errors import CjHealthError

HISTORY_TABLE = "cj_health_history"
INCIDENTS_TABLE = "cj_batch_incidents"
RUNS_TABLE = "cj_monitoring_runs"
MONITORING_TABLES = (HISTORY_TABLE, INCIDENTS_TABLE, RUNS_TABLE)
ACKNOWLEDGEMENTS_TABLE = "cj_batch_acknowledgements"
# Each acknowledgement with whether it holds now (the one definition of `is_active`).
ACKNOWLEDGEMENTS_MODEL = "int_acknowledgements_joined_to_batches"
# One row per batch and problem code: since when, and the acknowledgement accepting it.
ISSUES_VIEW = "cj_batch_issues"
HEALTH_VIEW = "cj_batch_health"
ALERTS_VIEW = "cj_batch_alerts"
# One row: when cj_batch_health was last refreshed (kept once, not on every health row).
REFRESH_VIEW = "cj_batch_health_refresh"
PROBLEM_CODES_VIEW = "cj_problem_codes"
# The per-batch facts the health view judges (a plain view: current between refreshes).
BATCH_FACTS_VIEW = "int_batch_facts"
# The settings cj-health applies outside dbt, as dbt resolved its vars (cj_health.settings).
SETTINGS_VIEW = "int_monitoring_settings"


def qualified(relation: str) -> sql.Composed:
    """`relation` in the monitoring schema, quoted."""
    return sql.Identifier(monitoring_schema(), relation)


def relation_exists(conn: psycopg.Connection, name: str) -> bool:
    """True when `name` exists in the monitoring schema (table, view or materialized view)."""
    row = conn.execute(
        "select 1 from pg_catalog.pg_class c"
        " join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relname = %s",
        (monitoring_schema(), name),
    ).fetchone()
    return row is not None


def require_relations(conn: psycopg.Connection, database: Database, *names: str) -> None:
    """One line naming the first of `names` missing from the monitoring schema (exit 2)."""
    for name in names:
        if not relation_exists(conn, name):
            raise CjHealthError(
                f"{database.display} lacks {monitoring_schema()}.{name};"
                " run `cj-health build` first"
            )


def column_exists(conn: psycopg.Connection, relation: str, column: str) -> bool:
    row = conn.execute(
        "select 1 from pg_catalog.pg_attribute a"
        " join pg_catalog.pg_class c on c.oid = a.attrelid"
        " join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relname = %s and a.attname = %s"
        " and a.attnum > 0 and not a.attisdropped",
        (monitoring_schema(), relation, column),
    ).fetchone()
    return row is not None
