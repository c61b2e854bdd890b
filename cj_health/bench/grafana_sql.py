"""The SQL in the Grafana provisioning files, as Grafana's PostgreSQL datasource would send it.

Grafana expands its macros (`$__timeFilter(created_at)` …) before the query reaches the
server. `expand_macros` does the same for the macros this project's dashboard and alert rules
may use, so tests can run every panel's and rule's SQL against a real database. Any other
macro or template variable is an error rather than SQL sent with a `$` left in it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from cj_health.paths import project_dir

DATASOURCE_TYPE = "grafana-postgresql-datasource"
EXPRESSION_DATASOURCE_UID = "__expr__"

_MACRO_WITH_ARGS = re.compile(r"\$__(\w+)\(([^()]*)\)")
_BARE_MACRO = re.compile(r"\$__(interval_ms|interval)\b")


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
    return grafana_dir() / "dashboards" / "cj_batch_health.json"


def alert_rules_path() -> Path:
    return grafana_dir() / "provisioning" / "alerting" / "cj_health_rules.yaml"


def datasource_path() -> Path:
    return grafana_dir() / "provisioning" / "datasources" / "cj_health.yaml"


def dashboard_provider_path() -> Path:
    return grafana_dir() / "provisioning" / "dashboards" / "cj_health.yaml"


def load_dashboard() -> dict[str, Any]:
    return json.loads(dashboard_path().read_text(encoding="utf-8"))


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _quoted(moment: datetime) -> str:
    return "'" + moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "'"


def expand_macros(
    raw_sql: str,
    *,
    time_from: datetime,
    time_to: datetime,
    interval_seconds: int = 60,
) -> str:
    """`raw_sql` with the macros of Grafana's PostgreSQL datasource expanded as Grafana does.

    Known: $__time(col), $__timeEpoch(col), $__timeFilter(col), $__timeFrom(), $__timeTo(),
    $__unixEpochFilter(col), $__interval (as `60s`, unquoted, as Grafana substitutes it) and
    $__interval_ms. Raises MacroError for anything else that starts with `$`.
    """

    def with_args(match: re.Match[str]) -> str:
        name, argument = match.group(1), match.group(2).strip()
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

    expanded = _BARE_MACRO.sub(bare, _MACRO_WITH_ARGS.sub(with_args, raw_sql))
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
