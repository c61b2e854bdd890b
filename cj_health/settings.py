"""The settings `cj-health` applies outside dbt, as dbt resolved its vars when it last built the
monitoring (the view int_monitoring_settings): `--vars` of `cj-health build` reach them too.

- retention of the monitoring's own tables (`history_retention_days`,
  `incident_retention_days`, `run_retention_days`), by which cj_health.history and
  cj_health.runs prune;
- the session settings of a refresh of cj_batch_health (`refresh.<name>`, from var
  `cj_refresh_settings`), which `cj-health refresh` and the bench apply.

Before the first build the view does not exist: nothing is pruned and a refresh runs with the
server's settings.
"""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from cj_health.db import monitoring_schema
from cj_health.monitoring_tables import SETTINGS_VIEW, relation_exists

REFRESH_PREFIX = "refresh."


def monitoring_settings(conn: psycopg.Connection) -> dict[str, str]:
    """Every setting by name; empty before the first build."""
    if not relation_exists(conn, SETTINGS_VIEW):
        return {}
    with conn.cursor(row_factory=tuple_row) as cursor:
        rows = cursor.execute(
            sql.SQL("select setting_name, setting_value from {}").format(
                sql.Identifier(monitoring_schema(), SETTINGS_VIEW)
            )
        ).fetchall()
    return {str(name): str(value) for name, value in rows}


def retention_days(conn: psycopg.Connection, name: str) -> int | None:
    """A retention setting in days (dbt checked it is a whole number, at least 1); None
    before the first build."""
    value = monitoring_settings(conn).get(name)
    return int(value) if value is not None else None


def refresh_settings(conn: psycopg.Connection) -> dict[str, str]:
    """The session settings for a refresh of cj_batch_health (e.g. jit, work_mem)."""
    return {
        name[len(REFRESH_PREFIX) :]: value
        for name, value in monitoring_settings(conn).items()
        if name.startswith(REFRESH_PREFIX)
    }
