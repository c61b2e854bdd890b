"""The SQL in the Grafana provisioning files, as Grafana's PostgreSQL datasource would send it.

Grafana interpolates a dashboard's template variables (`${problem_code}` …) and expands its
macros (`$__timeFilter(created_at)` …) before the query reaches the server. `expand_macros`
does the same for the variables and macros this project's dashboards and alert rules use, so
tests and the bench can run every panel's and rule's SQL against a real database. Any other
macro or variable is an error rather than SQL sent with a `$` left in it.

The SQL names no schema: the monitoring schema is the search_path of Grafana's database login
(docs/runbook.md, "Grant Grafana its reader"); `search_path_statement` sets the same on a
connection of one's own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from psycopg import sql

from cj_health.paths import project_dir

DATASOURCE_TYPE = "grafana-postgresql-datasource"
EXPRESSION_DATASOURCE_UID = "__expr__"

_MACRO_WITH_ARGS = re.compile(r"\$__(\w+)\(([^()]*)\)")
_BARE_MACRO = re.compile(r"\$__(interval_ms|interval)\b")
# A dashboard variable as Grafana spells it in SQL: `${name}` or `$name` (not `$__macro`).
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(?!__)(\w+)")
_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class MacroError(ValueError):
    """The SQL uses a Grafana macro or variable that expand_macros does not know."""


@dataclass(frozen=True)
class GrafanaQuery:
    """One SQL query of a panel target or an alert rule's datasource query."""

    source: str  # "panel 7 'Unhealthy batches'" or "rule cj-stuck-finalization"
    datasource_uid: str | None
    raw_sql: str


def grafana_dir() -> Path:
    return project_dir() / "grafana"


def dashboard_path() -> Path:
    """The main dashboard, CJ batch health."""
    return grafana_dir() / "dashboards" / "cj_batch_health.json"


def dashboard_paths() -> list[Path]:
    """Every dashboard the provider loads (grafana/dashboards/*.json)."""
    return sorted((grafana_dir() / "dashboards").glob("*.json"))


def alert_rules_path() -> Path:
    return grafana_dir() / "provisioning" / "alerting" / "cj_health_rules.yaml"


def datasource_path() -> Path:
    return grafana_dir() / "provisioning" / "datasources" / "cj_health.yaml"


def dashboard_provider_path() -> Path:
    return grafana_dir() / "provisioning" / "dashboards" / "cj_health.yaml"


def load_dashboard(path: Path | None = None) -> dict[str, Any]:
    return json.loads((path or dashboard_path()).read_text(encoding="utf-8"))


def search_path_statement(schema: str) -> sql.Composed:
    """`set search_path to <schema>`: on a connection of one's own, what the role setting of
    Grafana's login gives each of its sessions."""
    return sql.SQL("set search_path to {}").format(sql.Identifier(schema))


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _quoted(moment: datetime) -> str:
    return "'" + moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "'"


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def interpolate_variables(raw_sql: str, variables: dict[str, str | list[str]]) -> str:
    """`raw_sql` with dashboard variables replaced as Grafana's PostgreSQL datasource does: a
    single value as it is with `'` doubled (write `'${name}'` for a string), a multi-value
    variable (a list) as quoted literals joined by commas. Unknown names are left for
    expand_macros to refuse."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            return match.group(0)
        value = variables[name]
        if isinstance(value, list):
            return ",".join(sql_literal(item) for item in value)
        return value.replace("'", "''")

    return _VARIABLE.sub(replace, raw_sql)


def _time_group(argument: str) -> str:
    """$__timeGroup(col, '5m'): Grafana's `floor(extract(epoch from col)/300)*300`."""
    parts = [part.strip() for part in argument.split(",")]
    if len(parts) != 2:
        raise MacroError(f"$__timeGroup needs a column and an interval, got ({argument})")
    match = _DURATION.match(parts[1].strip("'\""))
    if not match:
        raise MacroError(f"unsupported $__timeGroup interval {parts[1]!r}")
    seconds = int(match.group(1)) * _DURATION_SECONDS[match.group(2)]
    return f"floor(extract(epoch from {parts[0]})/{seconds})*{seconds}"


def expand_macros(
    raw_sql: str,
    *,
    time_from: datetime,
    time_to: datetime,
    interval_seconds: int = 60,
    variables: dict[str, str | list[str]] | None = None,
) -> str:
    """`raw_sql` with the dashboard `variables` interpolated (interpolate_variables), then the
    macros of Grafana's PostgreSQL datasource expanded as Grafana does.

    Known: $__time(col), $__timeEpoch(col), $__timeFilter(col), $__timeFrom(), $__timeTo(),
    $__unixEpochFilter(col), $__timeGroup(col, interval) and $__timeGroupAlias(col, interval)
    without a fill value, $__interval (as `60s`, unquoted, as Grafana substitutes it) and
    $__interval_ms. Raises MacroError for anything else that starts with `$`.
    """

    def with_args(match: re.Match[str]) -> str:
        name, argument = match.group(1), match.group(2).strip()
        if name == "timeGroup":
            return _time_group(argument)
        if name == "timeGroupAlias":
            return f'{_time_group(argument)} AS "time"'
        if name == "time":
            return f'{argument} as "time"'
        if name == "timeEpoch":
            return f'extract(epoch from {argument}) as "time"'
        if name == "timeFilter":
            return f"{argument} between {_quoted(time_from)} and {_quoted(time_to)}"
        if name == "timeFrom" and not argument:
            return _quoted(time_from)
        if name == "timeTo" and not argument:
            return _quoted(time_to)
        if name == "unixEpochFilter":
            start, end = int(time_from.timestamp()), int(time_to.timestamp())
            return f"{argument} >= {start} and {argument} <= {end}"
        raise MacroError(f"unsupported Grafana macro $__{name}({argument})")

    def bare(match: re.Match[str]) -> str:
        if match.group(1) == "interval_ms":
            return str(interval_seconds * 1000)
        return f"{interval_seconds}s"

    interpolated = interpolate_variables(raw_sql, variables or {})
    expanded = _MACRO_WITH_ARGS.sub(with_args, _BARE_MACRO.sub(bare, interpolated))
    leftover = re.search(r"\$\w*", expanded)
    if leftover:
        raise MacroError(f"unexpanded Grafana macro or variable {leftover.group(0)!r}")
    return expanded


def dashboard_queries(dashboard: dict[str, Any]) -> list[GrafanaQuery]:
    """Every SQL target of every panel (rows' nested panels included)."""
    queries: list[GrafanaQuery] = []
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            datasource = target.get("datasource") or panel.get("datasource") or {}
            queries.append(
                GrafanaQuery(
                    source=f"panel {panel.get('id')} {panel.get('title')!r}",
                    datasource_uid=datasource.get("uid"),
                    raw_sql=target.get("rawSql", ""),
                )
            )
    return queries


def variable_queries(dashboard: dict[str, Any]) -> list[GrafanaQuery]:
    """The SQL of every query variable of a dashboard (the values Grafana offers)."""
    return [
        GrafanaQuery(
            source=f"variable {variable['name']}",
            datasource_uid=(variable.get("datasource") or {}).get("uid"),
            raw_sql=variable["query"],
        )
        for variable in dashboard.get("templating", {}).get("list", [])
        if variable.get("type") == "query"
    ]


def rule_queries(rules_file: dict[str, Any]) -> list[GrafanaQuery]:
    """The SQL of every datasource query (not expression) of every provisioned alert rule."""
    queries: list[GrafanaQuery] = []
    for group in rules_file.get("groups", []):
        for rule in group.get("rules", []):
            for query in rule.get("data", []):
                if query.get("datasourceUid") == EXPRESSION_DATASOURCE_UID:
                    continue
                queries.append(
                    GrafanaQuery(
                        source=f"rule {rule.get('uid')} refId {query.get('refId')}",
                        datasource_uid=query.get("datasourceUid"),
                        raw_sql=query.get("model", {}).get("rawSql", ""),
                    )
                )
    return queries
