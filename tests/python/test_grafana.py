"""The Grafana provisioning files, proven without a running Grafana.

Static checks: every file loads, matches the models of the pinned grafana-foundation-sdk (the
dashboards, the alert rules and their queries and expressions) or, where the SDK has no model
(datasource, dashboard provider, the alert-rule file wrapper, routes), Grafana's documented
file-provisioning format. Every datasource uid is the provisioned one, every rule's condition
names a refId it defines, every runbook_url and dashboard link lands on a heading of
docs/runbook.md, every rule names an existing dashboard panel, the runbook states each rule's
`for`, the route subtree merges into a tree with jq as the runbook says.

Database checks: on a database built by the ENG5 runner with the Batch 20 incident replayed,
every panel's, variable's and rule's SQL runs, variables and macros expanded, as a login in
cj_health_reader whose search_path is the monitoring schema (as Grafana's login is set up),
and the stuck-finalization rule returns the incident batch and no healthy batch; the same
again on a database whose monitoring is built into a schema of another name. The problem codes
dbt built are in every place that lists them, and the Batch 20 incident makes one
notification per receiver, listing its codes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
import typing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

import pytest
from conftest import cloned_database
from grafana_foundation_sdk.cog import plugins, runtime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting, dashboard, expr
from markdown_support import heading_anchors
from psycopg import errors as psycopg_errors
from psycopg import sql
from reader_support import (
    MonitoredDatabase,
    build_monitored_database,
    grafana_connect,
    monitored_database,
    reader_login,
)

from cj_health.bench import grafana_sql
from cj_health.bench.grafana_sql import (
    DATASOURCE_TYPE,
    EXPRESSION_DATASOURCE_UID,
    MacroError,
    expand_macros,
)
from cj_health.db import Database, connect, monitoring_schema
from cj_health.paths import project_dir
from cj_health.runs import SCHEDULE_MINUTES

plugins.register_default_plugins()

DATASOURCE_UID = "cj-health-postgres"
DATASOURCE_VARIABLE = "${datasource}"
# The SQL names no schema (the reader login's search_path is the monitoring schema).
MONITORING_VIEWS = ("cj_batch_health", "cj_batch_alerts", "cj_batch_health_refresh")
# The monitoring's own tables over time, which the history, incident and run panels read.
MONITORING_TABLES = ("cj_health_history", "cj_batch_incidents", "cj_monitoring_runs")
MAIN_DASHBOARD_UID = "cj-batch-health"
# Where the docs are published: one placeholder in the dashboards and the rules, which the
# runbook's install step replaces.
RUNBOOK_BASE_PLACEHOLDER = "https://cj-batch-health.example"
DETAIL_DASHBOARD_UID = "cj-batch-detail"
RULE_ISSUES = {
    "cj-stuck-finalization": {"STUCK_FINALIZATION"},
    "cj-scoring-too-long": {"SCORING_TOO_LONG"},
    "cj-anchor-flag-mismatch": {"ANCHOR_FLAG_MISMATCH"},
    "cj-wrong-projections": {"ANCHOR_PROJECTED", "MISATTRIBUTED_PROJECTION"},
}
OTHER_RULE = "cj-other-batch-problems"  # every alerting code the rules above do not name
STALE_RULE = "cj-health-view-stale"
# Rules about the monitoring's own runs (cj_monitoring_runs), one series per command.
RUN_RULES = ("cj-monitoring-overdue", "cj-monitoring-run-failed")
PER_BATCH_RULES = (*RULE_ISSUES, OTHER_RULE)
# Grafana's accepted values (ngalert models; the provisioning file format).
NO_DATA_STATES = {"Alerting", "NoData", "OK", "KeepLast"}
EXEC_ERR_STATES = {"Alerting", "Error", "OK", "KeepLast"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


# --- helpers -------------------------------------------------------------------------------


def _round_trip(model: Any) -> Any:
    return json.loads(json.dumps(model, cls=JSONEncoder))


def _lost_keys(original: Any, reparsed: Any, path: str = "") -> list[str]:
    """Paths of `original` that the SDK model dropped or changed: unknown or misspelt keys,
    values of the wrong shape. The SDK adds defaults, so `reparsed` may hold more."""
    if isinstance(original, dict):
        if not isinstance(reparsed, dict):
            return [path or "<root>"]
        lost: list[str] = []
        for key, value in original.items():
            if key not in reparsed:
                lost.append(f"{path}.{key}")
            else:
                lost.extend(_lost_keys(value, reparsed[key], f"{path}.{key}"))
        return lost
    if isinstance(original, list):
        if not isinstance(reparsed, list) or len(reparsed) != len(original):
            return [path]
        lost = []
        for index, (left, right) in enumerate(zip(original, reparsed, strict=True)):
            lost.extend(_lost_keys(left, right, f"{path}[{index}]"))
        return lost
    return [] if original == reparsed else [f"{path}={original!r}"]


def _literal_values(cls: type, attribute: str) -> set[str]:
    """The values a Literal-typed attribute of an SDK model accepts."""
    return set(typing.get_args(typing.get_type_hints(cls)[attribute]))


def _rules() -> list[dict[str, Any]]:
    rules_file = grafana_sql.load_yaml(grafana_sql.alert_rules_path())
    return [rule for group in rules_file["groups"] for rule in group["rules"]]


def _rule(uid: str) -> dict[str, Any]:
    return next(rule for rule in _rules() if rule["uid"] == uid)


def _panel(title: str) -> dict[str, Any]:
    return next(p for p in grafana_sql.load_dashboard()["panels"] if p["title"] == title)


def _dashboards() -> dict[str, dict[str, Any]]:
    """Every provisioned dashboard by uid."""
    loaded = [grafana_sql.load_dashboard(path) for path in grafana_sql.dashboard_paths()]
    return {board["uid"]: board for board in loaded}


def _variable(board: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in board["templating"]["list"] if v["name"] == name)


def _runbook() -> str:
    return (project_dir() / "docs" / "runbook.md").read_text(encoding="utf-8")


def _sql_relations(raw_sql: str) -> set[str]:
    return set(re.findall(r"\b(?:from|join)\s+([\w.]+)", raw_sql))


# --- the SDK pin ---------------------------------------------------------------------------


def test_grafana_sdk_is_the_pinned_version():
    pyproject = tomllib.loads((project_dir() / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [
        dep
        for dep in pyproject["project"]["optional-dependencies"]["dev"]
        if dep.startswith("grafana-foundation-sdk")
    ]
    assert len(pins) == 1 and "==" in pins[0], f"grafana-foundation-sdk must be pinned: {pins}"
    pinned = pins[0].split("==", 1)[1]
    assert metadata.version("grafana-foundation-sdk") == pinned


# --- datasource and dashboard provider -----------------------------------------------------


def test_datasource_is_postgres_with_fixed_uid_and_no_secret():
    text = grafana_sql.datasource_path().read_text(encoding="utf-8")
    config = grafana_sql.load_yaml(grafana_sql.datasource_path())
    assert config["apiVersion"] == 1
    [source] = config["datasources"]
    assert source["type"] == DATASOURCE_TYPE
    assert source["uid"] == DATASOURCE_UID
    assert source["access"] == "proxy"
    for value in (
        source["url"],
        source["user"],
        source["jsonData"]["database"],
        source["secureJsonData"]["password"],
    ):
        assert "$__env{" in value, f"{value!r} must come from Grafana's environment"
    assert set(source["secureJsonData"]) == {"password"}
    assert "password" not in source and "password" not in source["jsonData"]
    assert not re.search(r"password:\s*[^$\s]", text), "a literal password in the datasource file"


def test_dashboard_provider_loads_the_dashboard_folder():
    config = grafana_sql.load_yaml(grafana_sql.dashboard_provider_path())
    assert config["apiVersion"] == 1
    [provider] = config["providers"]
    assert provider["type"] == "file"
    assert provider["orgId"] == 1
    assert provider["options"]["path"].startswith("/")
    assert provider["folder"] == _rules_folder()
    assert grafana_sql.dashboard_path() in grafana_sql.dashboard_paths()
    assert {path.parent for path in grafana_sql.dashboard_paths()} == {
        grafana_sql.dashboard_path().parent
    }


def _rules_folder() -> str:
    [group] = grafana_sql.load_yaml(grafana_sql.alert_rules_path())["groups"]
    return group["folder"]


# --- the dashboard -------------------------------------------------------------------------


@pytest.mark.unit
def test_dashboards_match_the_sdk_model():
    boards = _dashboards()
    assert set(boards) == {MAIN_DASHBOARD_UID, DETAIL_DASHBOARD_UID}
    assert boards[MAIN_DASHBOARD_UID]["title"] == "CJ batch health"
    known_panel_types = set(runtime.Runtime().panelcfg_variants)
    for uid, raw in boards.items():
        reparsed = _round_trip(dashboard.Dashboard.from_json(raw))
        assert _lost_keys(raw, reparsed) == [], uid
        assert 8 <= len(uid) <= 40
        ids = [panel["id"] for panel in raw["panels"]]
        assert len(ids) == len(set(ids)), f"{uid}: panel ids must be unique"
        for panel in raw["panels"]:
            assert panel["type"] in known_panel_types, panel["title"]
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
            assert panel["targets"], f"panel {panel['title']!r} has no query"


@pytest.mark.unit
def test_no_grafana_file_names_the_monitoring_schema():
    """The schema is the reader login's search_path, never spelt in a file."""
    named = [
        str(path.relative_to(project_dir()))
        for path in grafana_sql.grafana_dir().rglob("*")
        if path.is_file() and "cj_monitoring." in path.read_text(encoding="utf-8")
    ]
    assert named == []
    for query in _all_queries():
        for relation in _sql_relations(query.raw_sql):
            assert "." not in relation, f"{query.source} names a schema: {relation}"


def test_dashboard_has_the_panels_on_call_needs():
    stuck = _panel("Stuck batches now")
    assert stuck["type"] == "stat"
    steps = stuck["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[0] == {"color": "green", "value": None}
    assert steps[-1]["color"] == "red" and 0 < steps[-1]["value"] <= 1, "red above 0"
    assert "from cj_batch_alerts" in stuck["targets"][0]["rawSql"]

    assert "group by health_status" in _panel("Batches by health status")["targets"][0]["rawSql"]
    unhealthy_sql = _panel("Unhealthy batches")["targets"][0]["rawSql"]
    assert "'cj-health inspect ' || cj_batch_id" in unhealthy_sql
    assert "acknowledged_issues" in unhealthy_sql
    assert "projection_count" in _panel("Projections coverage by batch")["targets"][0]["rawSql"]
    assert "scale_separation_reliability" in _panel("Reliability")["targets"][0]["rawSql"]
    assert "now() - max(refreshed_at)" in _panel("View age")["targets"][0]["rawSql"]
    for query in grafana_sql.dashboard_queries(grafana_sql.load_dashboard()):
        assert _sql_relations(query.raw_sql) & {*MONITORING_VIEWS, *MONITORING_TABLES}, query.source
    for title in (
        "Alerting batches by problem code over time",
        "Batches by health status over time",
    ):
        panel = _panel(title)
        assert panel["type"] == "timeseries"
        sql = panel["targets"][0]["rawSql"]
        assert "from cj_health_history" in sql, title
        # one point per time bucket of the panel's interval, not one per refresh
        assert "$__timeGroupAlias(history.refreshed_at, $__interval)" in sql, title
        assert "group by 1, 2" in sql, title
    weekly = _panel("Most frequent problem codes this week")["targets"][0]["rawSql"]
    assert "from cj_health_history" in weekly and "interval '7 days'" in weekly
    assert (
        "cleared_at - first_seen_at"
        in (_panel("Time to resolve by problem code")["targets"][0]["rawSql"])
    )


@pytest.mark.unit
def test_every_panel_uses_the_datasource_variable_defaulting_to_the_provisioned_one():
    for uid, raw in _dashboards().items():
        source = _variable(raw, "datasource")
        assert source["type"] == "datasource" and source["query"] == DATASOURCE_TYPE, uid
        assert source["current"]["value"] == DATASOURCE_UID, uid
        expected = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_VARIABLE}
        for variable in raw["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["datasource"] == expected, variable["name"]
        for panel in raw["panels"]:
            assert panel["datasource"] == expected, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], panel["title"]
                assert target["rawQuery"] is True and target["editorMode"] == "code"
                assert target["format"] in {"table", "time_series"}


@pytest.mark.unit
def test_main_dashboard_filters_by_problem_code_and_severity():
    board = grafana_sql.load_dashboard()
    for name in ("problem_code", "severity"):
        variable = _variable(board, name)
        assert variable["type"] == "query" and "from cj_problem_codes" in variable["query"]
        assert variable["multi"] and variable["includeAll"], name
    filtered = {
        "Batches alerting now",
        "Alerting now",
        "Unhealthy batches",
        "Alerting batches by problem code over time",
        "Incidents",
        "Time to resolve by problem code",
        "Most frequent problem codes this week",
    }
    for title in filtered:
        sql = _panel(title)["targets"][0]["rawSql"]
        assert "in (${problem_code})" in sql and "in (${severity})" in sql, title


# --- the alert rules -----------------------------------------------------------------------


def test_alert_rule_file_has_grafanas_provisioning_structure():
    rules_file = grafana_sql.load_yaml(grafana_sql.alert_rules_path())
    assert rules_file["apiVersion"] == 1
    assert set(rules_file) <= {"apiVersion", "groups", "deleteRules"}
    for group in rules_file["groups"]:
        assert isinstance(group["orgId"], int) and group["orgId"] >= 1
        assert group["name"].strip() and group["folder"].strip()
        assert DURATION.match(group["interval"]), group["interval"]
        uids = [rule["uid"] for rule in group["rules"]]
        assert len(uids) == len(set(uids))
        for rule in group["rules"]:
            assert set(rule) >= {"uid", "title", "condition", "data", "for", "annotations"}
            assert 1 <= len(rule["uid"]) <= 40 and re.fullmatch(r"[\w-]+", rule["uid"])
            assert DURATION.match(rule["for"]), rule["uid"]
            assert rule["noDataState"] in NO_DATA_STATES
            assert rule["execErrState"] in EXEC_ERR_STATES
            # Labels are env-expanded by Grafana's provisioning: a `$` would be eaten.
            assert all("$" not in value for value in rule.get("labels", {}).values())


def test_alert_rules_match_the_sdk_models():
    rules_file = grafana_sql.load_yaml(grafana_sql.alert_rules_path())
    reducers = _literal_values(expr.TypeReduce, "reducer")
    evaluators = _literal_values(expr.ExprTypeThresholdConditionsEvaluator, "type_val")
    for group in rules_file["groups"]:
        for rule in group["rules"]:
            # The SDK models the API form of a rule; the file form keeps the group's fields
            # on the group and spells `for`, `uid` etc. the same way.
            api_form = {
                **{k: v for k, v in rule.items() if k != "data"},
                "folderUID": group["folder"],
                "orgID": group["orgId"],
                "ruleGroup": group["name"],
            }
            assert _lost_keys(api_form, _round_trip(alerting.Rule.from_json(api_form))) == []
            for query in rule["data"]:
                reparsed = _round_trip(alerting.Query.from_json(query))
                assert _lost_keys(query, reparsed) == [], f"{rule['uid']} {query['refId']}"
                model = query["model"]
                if query["datasourceUid"] != EXPRESSION_DATASOURCE_UID:
                    continue
                typed = runtime.dataquery_from_json(model, EXPRESSION_DATASOURCE_UID)
                assert _lost_keys(model, _round_trip(typed)) == [], rule["uid"]
                if model["type"] == "reduce":
                    assert model["reducer"] in reducers
                elif model["type"] == "threshold":
                    for condition in model["conditions"]:
                        assert condition["evaluator"]["type"] in evaluators
                else:
                    pytest.fail(f"{rule['uid']}: unexpected expression {model['type']}")


def test_every_rule_condition_and_expression_names_a_defined_ref_id():
    for rule in _rules():
        ref_ids = [query["refId"] for query in rule["data"]]
        assert len(ref_ids) == len(set(ref_ids)), rule["uid"]
        assert rule["condition"] in ref_ids, rule["uid"]
        for query in rule["data"]:
            assert query["model"]["refId"] == query["refId"], rule["uid"]
            if query["datasourceUid"] == EXPRESSION_DATASOURCE_UID:
                assert query["model"]["datasource"]["uid"] == EXPRESSION_DATASOURCE_UID
                assert query["model"]["expression"] in ref_ids, rule["uid"]
                assert query["model"]["expression"] != query["refId"], rule["uid"]


def test_every_rule_queries_the_provisioned_datasource_then_reduces_and_thresholds():
    for rule in _rules():
        by_ref = {query["refId"]: query for query in rule["data"]}
        sql_queries = [q for q in rule["data"] if q["datasourceUid"] != EXPRESSION_DATASOURCE_UID]
        assert sql_queries, rule["uid"]
        for query in sql_queries:
            assert query["datasourceUid"] == DATASOURCE_UID, rule["uid"]
            assert query["model"]["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
            assert query["relativeTimeRange"]["from"] > query["relativeTimeRange"]["to"] >= 0
        condition = by_ref[rule["condition"]]["model"]
        assert condition["type"] == "threshold", rule["uid"]
        reduce = by_ref[condition["expression"]]["model"]
        assert reduce["type"] == "reduce", rule["uid"]
        assert by_ref[reduce["expression"]]["datasourceUid"] == DATASOURCE_UID


def test_the_required_rules_exist_with_their_problem_codes():
    rules = {rule["uid"]: rule for rule in _rules()}
    assert set(rules) == {*PER_BATCH_RULES, STALE_RULE, *RUN_RULES}
    for uid in PER_BATCH_RULES:
        sql = rules[uid]["data"][0]["model"]["rawSql"]
        assert "from cj_batch_alerts as a" in sql, uid
        assert "as cj_batch_id" in sql, f"{uid}: one series per batch, labelled cj_batch_id"
        named = set(re.findall(r"'([A-Z_]+)'", sql))
        if uid == OTHER_RULE:
            assert "not in (" in sql
            # exactly the codes the named rules take: nothing notified twice or never
            assert named == set().union(*RULE_ISSUES.values())
        else:
            assert named == RULE_ISSUES[uid], uid
    assert rules["cj-stuck-finalization"]["for"] == "2m"
    stale = rules[STALE_RULE]
    assert "now() - max(refreshed_at)" in stale["data"][0]["model"]["rawSql"]
    threshold = next(q for q in stale["data"] if q["refId"] == stale["condition"])["model"]
    assert threshold["conditions"][0]["evaluator"] == {"type": "gt", "params": [15]}
    for uid in RUN_RULES:
        assert "cj_monitoring_runs" in _sql_relations(rules[uid]["data"][0]["model"]["rawSql"])
        assert rules[uid]["labels"]["severity"] in {"critical", "warning"}
    # The dead man's switch: twice each documented interval (cj_health.runs.SCHEDULE_MINUTES).
    overdue = rules["cj-monitoring-overdue"]
    schedule = ", ".join(f"('{c}', {m})" for c, m in SCHEDULE_MINUTES.items())
    assert f"(values {schedule})" in overdue["data"][0]["model"]["rawSql"]
    threshold = next(q for q in overdue["data"] if q["refId"] == overdue["condition"])["model"]
    assert threshold["conditions"][0]["evaluator"] == {"type": "gt", "params": [2]}


def test_every_rule_explains_itself_and_links_an_existing_runbook_heading():
    anchors = heading_anchors((project_dir() / "docs" / "runbook.md").read_text(encoding="utf-8"))
    for rule in _rules():
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule["uid"]
        if rule["uid"] in RUN_RULES:
            assert "{{ $labels.command }}" in annotations["description"], rule["uid"]
        elif rule["uid"] != STALE_RULE:
            assert "{{ $labels.cj_batch_id }}" in annotations["description"], rule["uid"]
        url, _, anchor = annotations["runbook_url"].partition("#")
        # Provisioning expands no environment variable in annotations: the base is the
        # placeholder host the install step replaces, the same as the dashboards'.
        assert url == f"{RUNBOOK_BASE_PLACEHOLDER}/docs/runbook.md", rule["uid"]
        assert anchor in anchors, f"{rule['uid']}: no heading #{anchor} in docs/runbook.md"
        for value in annotations.values():
            assert not re.search(r"\$\{?[A-Z]", value), f"{rule['uid']}: {value}"


@pytest.mark.unit
def test_the_dashboards_link_the_same_runbook_as_the_rules():
    """Dashboard files get no environment expansion: the links use the hidden constant
    runbook_base_url, a placeholder host the runbook's install step replaces, on the same
    path as the rules' links."""
    rule_paths = {rule["annotations"]["runbook_url"].partition("#")[0] for rule in _rules()}
    assert rule_paths == {f"{RUNBOOK_BASE_PLACEHOLDER}/docs/runbook.md"}
    install = _runbook_sections(_runbook())["install-the-grafana-files"]
    assert f"s#{RUNBOOK_BASE_PLACEHOLDER}#" in install
    assert "grafana/dashboards/*.json grafana/provisioning/alerting/cj_health_rules.yaml" in install
    for uid, board in _dashboards().items():
        base = _variable(board, "runbook_base_url")
        assert base["type"] == "constant" and base["hide"] == 2, uid
        assert base["query"] == RUNBOOK_BASE_PLACEHOLDER, uid
        [link] = [link for link in board["links"] if link["type"] == "link"]
        assert link["url"] == "${runbook_base_url}/docs/runbook.md", uid


def test_notifications_link_each_alerts_runbook_url():
    """Templates are not expanded for environment variables: the link is the annotation."""
    text = (project_dir() / "grafana/provisioning/alerting/cj_health_templates.yaml").read_text()
    assert "{{ .Annotations.runbook_url }}" in text and "${" not in text


def test_runbook_links_inside_the_runbook_resolve():
    text = (project_dir() / "docs" / "runbook.md").read_text(encoding="utf-8")
    anchors = heading_anchors(text)
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in anchors, f"docs/runbook.md links to missing #{anchor}"


def _runbook_sections(markdown: str) -> dict[str, str]:
    """Each heading's anchor and its section: the text up to the next heading of the same
    or a higher level (its subheadings included)."""
    headings: list[tuple[int, int, str]] = []  # (line index, level, anchor)
    lines = markdown.splitlines()
    anchors: set[str] = set()
    in_code = False
    for index, line in enumerate(lines):
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        before = set(anchors)
        anchors = heading_anchors("\n".join(lines[: index + 1]))
        [anchor] = anchors - before
        headings.append((index, len(line) - len(line.lstrip("#")), anchor))
    sections = {}
    for number, (index, level, anchor) in enumerate(headings):
        end = next((i for i, lv, _ in headings[number + 1 :] if lv <= level), len(lines))
        sections[anchor] = "\n".join(lines[index:end])
    return sections


FOR_STATED = re.compile(r"`for: (\w+)`")


def test_the_runbook_states_each_rules_pending_period():
    """The heading a rule links states its `for` and no other; so does the latency budget,
    for the stuck-finalization rule."""
    sections = _runbook_sections(_runbook())
    for rule in _rules():
        anchor = rule["annotations"]["runbook_url"].partition("#")[2]
        stated = set(FOR_STATED.findall(sections[anchor]))
        assert stated == {rule["for"]}, (
            f"{rule['uid']} has for: {rule['for']}, docs/runbook.md#{anchor} states {stated}"
        )
    latency = sections["alert-latency-stuck_finalization-within-10-minutes"]
    assert set(FOR_STATED.findall(latency)) == {_rule("cj-stuck-finalization")["for"]}


@pytest.mark.unit
def test_every_rule_names_an_existing_dashboard_panel():
    panels = {
        uid: {panel["id"]: panel for panel in board["panels"]}
        for uid, board in _dashboards().items()
    }
    for rule in _rules():
        annotations = rule["annotations"]
        board = annotations["__dashboardUid__"]
        assert board in panels, f"{rule['uid']}: no dashboard {board}"
        # provisioning reads annotations as strings: the panel id is a quoted number
        assert isinstance(annotations["__panelId__"], str), rule["uid"]
        panel = panels[board].get(int(annotations["__panelId__"]))
        assert panel is not None, f"{rule['uid']}: no panel {annotations['__panelId__']}"
        relations = _sql_relations(rule["data"][0]["model"]["rawSql"])
        shown = _sql_relations(panel["targets"][0]["rawSql"])
        assert relations & shown, f"{rule['uid']}: panel {panel['title']!r} reads {shown}"
    stuck = _rule("cj-stuck-finalization")["annotations"]["__panelId__"]
    assert panels[MAIN_DASHBOARD_UID][int(stuck)]["title"] == "Stuck batches now"


def _links(board: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(panel title, panel, url) of every data link of every field override."""
    found = []
    for panel in board["panels"]:
        for override in panel["fieldConfig"].get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "links":
                    found.extend((panel["title"], panel, link["url"]) for link in prop["value"])
    return found


@pytest.mark.unit
def test_data_links_lead_to_the_detail_dashboard_and_existing_runbook_headings():
    boards = _dashboards()
    anchors = heading_anchors(_runbook())
    detail_variables = {v["name"] for v in boards[DETAIL_DASHBOARD_UID]["templating"]["list"]}
    drill_panels, runbook_panels = set(), set()
    for uid, board in boards.items():
        for title, panel, url in _links(board):
            sql = panel["targets"][0]["rawSql"]
            if "/docs/runbook.md#" in url:
                assert url.startswith("${runbook_base_url}/docs/runbook.md#"), url
                anchor = url.partition("#")[2]
                field = re.fullmatch(r"\$\{__data\.fields\.(\w+)\}", anchor)
                if field:  # the anchor is a column the panel's query computes
                    assert f" as {field.group(1)}" in sql, f"{uid} {title}: {anchor}"
                    runbook_panels.add(title)
                else:
                    assert anchor in anchors, f"{uid} {title}: no heading #{anchor}"
            else:
                path, _, query = url.partition("?")
                assert path == f"/d/{DETAIL_DASHBOARD_UID}/{DETAIL_DASHBOARD_UID}", url
                params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
                assert params == {"var-cj_batch_id": "${__value.raw}"}, url
                assert "${datasource:queryparam}" in query and "${__url_time_range}" in query
                assert "cj_batch_id" in detail_variables
                drill_panels.add(title)
    assert {"Alerting now", "Unhealthy batches", "Incidents"} <= drill_panels
    assert {"Alerting now", "Unhealthy batches", "Problems of the batch"} <= runbook_panels
    for board in boards.values():
        for link in board["links"]:
            if "#" in link.get("url", ""):
                assert link["url"].partition("#")[2] in anchors, link["url"]


# --- routing -------------------------------------------------------------------------------

ROUTING = project_dir() / "grafana" / "routing"
ALERTING = project_dir() / "grafana" / "provisioning" / "alerting"


def _route() -> dict[str, Any]:
    return json.loads((ROUTING / "cj_health_route.json").read_text(encoding="utf-8"))


def _walk(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield route
    for child in route.get("routes", []):
        yield from _walk(child)


@pytest.mark.unit
def test_routes_group_by_batch_and_name_provisioned_receivers_and_mute_timings():
    receivers = {
        point["name"]
        for point in grafana_sql.load_yaml(ALERTING / "cj_health_contact_points.yaml")[
            "contactPoints"
        ]
    }
    mutes = {
        mute["name"]
        for mute in grafana_sql.load_yaml(ALERTING / "cj_health_mute_timings.yaml")["muteTimes"]
    }
    route = _route()
    assert route["object_matchers"] == [["team", "=", "cj-assessment"]]
    for node in _walk(route):
        assert node["receiver"] in receivers
        assert set(node.get("mute_time_intervals", [])) <= mutes
        # one notification per batch, listing its codes: not one per rule and code
        assert node["group_by"] == ["cj_batch_id"], node
        for key in ("group_wait", "group_interval", "repeat_interval"):
            assert DURATION.match(node[key]), (key, node)
        for matcher in node["object_matchers"]:
            assert matcher[1] == "=", "the notification test below models only ="
    # Nothing in provisioning/alerting replaces the organisation's policy tree.
    for path in ALERTING.glob("*.yaml"):
        assert "policies" not in grafana_sql.load_yaml(path), path.name
    template = grafana_sql.load_yaml(ALERTING / "cj_health_templates.yaml")["templates"][0]
    assert "{{ $alert.Labels.issue }}" in template["template"]  # the batch's codes, listed
    assert "{{ with .CommonLabels.cj_batch_id }}" in template["template"]


@pytest.mark.unit
def test_the_replace_all_option_holds_the_same_route():
    replace_all = grafana_sql.load_yaml(ROUTING / "cj_health_policies.yaml")
    assert replace_all["apiVersion"] == 1
    [tree] = replace_all["policies"]
    assert tree["routes"] == [_route()]
    assert tree["receiver"] == "cj-health-paging"


def _jq_merge(tree: dict[str, Any]) -> dict[str, Any]:
    """The runbook's merge command: jq --slurpfile route ... -f merge_route.jq tree.json."""
    jq = shutil.which("jq")
    if jq is None:
        pytest.skip("jq is not installed")
    done = subprocess.run(
        [
            jq,
            "--slurpfile",
            "route",
            str(ROUTING / "cj_health_route.json"),
            "-f",
            str(ROUTING / "merge_route.jq"),
        ],
        input=json.dumps(tree),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_the_route_merges_into_an_existing_tree_and_keeps_it():
    runbook = _runbook()
    assert "-f grafana/routing/merge_route.jq" in runbook
    assert "--slurpfile route grafana/routing/cj_health_route.json" in runbook
    other = {"receiver": "platform", "object_matchers": [["team", "=", "platform"]]}
    existing = {"receiver": "default-email", "group_by": ["alertname"], "routes": [other]}
    merged = _jq_merge(existing)
    assert merged["receiver"] == "default-email" and merged["group_by"] == ["alertname"]
    assert merged["routes"] == [_route(), other]
    assert _jq_merge(merged) == merged, "merging twice changes the tree"
    stale = {**_route(), "group_by": ["alertname", "cj_batch_id", "issue"]}
    assert _jq_merge({**existing, "routes": [other, stale]})["routes"] == [_route(), other]
    assert _jq_merge({"receiver": "default-email"})["routes"] == [_route()]


# --- macro expansion -----------------------------------------------------------------------

FROM = datetime(2025, 11, 14, 8, 0, 0, tzinfo=UTC)
TO = FROM + timedelta(hours=6)


def test_expand_macros_like_grafanas_postgres_datasource():
    sql = "select $__time(created_at) from t where $__timeFilter(created_at)"
    assert expand_macros(sql, time_from=FROM, time_to=TO) == (
        'select created_at as "time" from t where created_at between '
        "'2025-11-14T08:00:00Z' and '2025-11-14T14:00:00Z'"
    )
    assert expand_macros("$__timeFrom() $__timeTo()", time_from=FROM, time_to=TO) == (
        "'2025-11-14T08:00:00Z' '2025-11-14T14:00:00Z'"
    )
    epoch = expand_macros("$__unixEpochFilter(ts)", time_from=FROM, time_to=TO)
    assert epoch == f"ts >= {int(FROM.timestamp())} and ts <= {int(TO.timestamp())}"
    assert expand_macros("$__interval_ms", time_from=FROM, time_to=TO, interval_seconds=5) == "5000"


def test_expand_macros_groups_time_and_interpolates_variables_like_grafana():
    """Grafana's PostgreSQL $__timeGroup is `floor(extract(epoch from col)/secs)*secs`;
    variables are interpolated first (a multi-value one as quoted literals), so
    `$__interval` inside a macro is the interval."""
    sql = "select $__timeGroupAlias(at, $__interval), $__timeGroup(at, '5m') where c in (${codes})"
    assert expand_macros(
        sql,
        time_from=FROM,
        time_to=TO,
        interval_seconds=3600,
        variables={"codes": ["A", "O'B"]},
    ) == (
        'select floor(extract(epoch from at)/3600)*3600 AS "time", '
        "floor(extract(epoch from at)/300)*300 where c in ('A','O''B')"
    )
    single = expand_macros(
        "where id::text = '${batch}'",
        time_from=FROM,
        time_to=TO,
        variables={"batch": "1' or '1'='1"},
    )
    assert single == "where id::text = '1'' or ''1''=''1'"


@pytest.mark.parametrize(
    "sql", ["select $__timeGroup(t, '5m', 0)", "select $batch", "select ${batch}", "select $__x"]
)
def test_expand_macros_refuses_what_it_cannot_expand(sql):
    with pytest.raises(MacroError):
        expand_macros(sql, time_from=FROM, time_to=TO)


# --- the SQL, run as Grafana's reader on an ENG5 database with the incident replayed --------


@pytest.fixture(scope="module")
def monitored(admin_db, schema_template, tmp_path_factory) -> Iterator[MonitoredDatabase]:
    with monitored_database(admin_db, schema_template, tmp_path_factory.mktemp("eng5")) as built:
        yield built


@pytest.fixture(scope="module")
def reader(monitored: MonitoredDatabase) -> Iterator[Database]:
    with reader_login(monitored.database) as login:
        yield login


def _variables(reader: Database, cj_batch_id: int | str = "") -> dict[str, str | list[str]]:
    """The dashboards' variables as Grafana would fill them: every value of each query
    variable (its query run as the reader: "All"), the batch of the detail dashboard."""
    values: dict[str, str | list[str]] = {"cj_batch_id": str(cj_batch_id)}
    for board in _dashboards().values():
        for query in grafana_sql.variable_queries(board):
            with grafana_connect(reader) as conn:
                rows = conn.execute(query.raw_sql).fetchall()
            values[query.source.removeprefix("variable ")] = [row[0] for row in rows]
    return values


def _run_as(
    reader: Database,
    query: grafana_sql.GrafanaQuery,
    variables: dict[str, str | list[str]] | None = None,
) -> tuple[list[str], list, list]:
    """Interpolate the variables (default: all values, no batch), expand the macros over the
    dashboard's default range and run it; return the column names, their PostgreSQL type
    names and the rows."""
    now = datetime.now(UTC)
    expanded = expand_macros(
        query.raw_sql,
        time_from=now - timedelta(days=7),
        time_to=now,
        variables=_variables(reader) if variables is None else variables,
    )
    with grafana_connect(reader) as conn:
        cursor = conn.execute(expanded)
        rows = cursor.fetchall()
        names = [column.name for column in cursor.description]
        types = [conn.adapters.types.get(column.type_code).name for column in cursor.description]
    return names, types, rows


def _all_queries() -> list[grafana_sql.GrafanaQuery]:
    """Every panel's and every query variable's SQL of every dashboard, every rule's SQL."""
    queries: list[grafana_sql.GrafanaQuery] = []
    for uid, board in _dashboards().items():
        for query in grafana_sql.dashboard_queries(board) + grafana_sql.variable_queries(board):
            queries.append(
                grafana_sql.GrafanaQuery(
                    f"{uid} {query.source}", query.datasource_uid, query.raw_sql
                )
            )
    return queries + grafana_sql.rule_queries(grafana_sql.load_yaml(grafana_sql.alert_rules_path()))


def _run_everything(reader: Database, batch: int) -> None:
    queries = _all_queries()
    assert len(queries) >= 15 + 3 + 8
    variables = _variables(reader, batch)
    for query in queries:
        assert query.datasource_uid in {DATASOURCE_UID, DATASOURCE_VARIABLE}, query.source
        try:
            _run_as(reader, query, variables)
        except Exception as exc:  # name the panel or rule, not only the SQL error
            pytest.fail(f"{query.source}: {type(exc).__name__}: {exc}")


def test_every_panel_variable_and_rule_query_runs_as_the_reader(reader, monitored):
    _run_everything(reader, monitored.incident_batch_id)
    values = _variables(reader)
    assert "STUCK_FINALIZATION" in values["problem_code"]
    assert values["severity"] == ["critical", "warning"]


NUMBER_TYPES = {"int2", "int4", "int8", "float4", "float8", "numeric"}
STRING_TYPES = {"text", "varchar", "bpchar"}


def _rule_query(uid: str) -> grafana_sql.GrafanaQuery:
    rules_file = {"groups": [{"rules": [_rule(uid)]}]}
    [query] = grafana_sql.rule_queries(rules_file)
    return query


def test_rule_queries_return_one_series_per_batch(reader, monitored):
    for uid in PER_BATCH_RULES:
        names, types, rows = _run_as(reader, _rule_query(uid))
        numbers = [name for name, kind in zip(names, types, strict=True) if kind in NUMBER_TYPES]
        labels = [name for name, kind in zip(names, types, strict=True) if kind in STRING_TYPES]
        assert len(numbers) == 1, f"{uid}: Grafana needs exactly one value column: {names}"
        assert "cj_batch_id" in labels and set(labels) | set(numbers) == set(names), uid
        keys = [tuple(row[names.index(label)] for label in labels) for row in rows]
        assert len(keys) == len(set(keys)), f"{uid}: two rows with the same labels"
        assert all(row[names.index(numbers[0])] > 0 for row in rows), uid


def test_stuck_rule_fires_for_the_replayed_incident_and_no_healthy_batch(reader, monitored):
    names, _, rows = _run_as(reader, _rule_query("cj-stuck-finalization"))
    batches = [row[names.index("cj_batch_id")] for row in rows]
    assert batches == [str(monitored.incident_batch_id)]
    assert not {str(batch) for batch in monitored.healthy_batch_ids} & set(batches)
    # Batch 20 also lost its anchor flags: that rule names it too, and only it.
    names, _, rows = _run_as(reader, _rule_query("cj-anchor-flag-mismatch"))
    assert [row[names.index("cj_batch_id")] for row in rows] == [str(monitored.incident_batch_id)]
    for uid in ("cj-scoring-too-long", "cj-wrong-projections"):
        assert _run_as(reader, _rule_query(uid))[2] == [], f"{uid} fires on this database"


def test_stale_rule_is_quiet_on_a_fresh_view(reader):
    names, types, rows = _run_as(reader, _rule_query(STALE_RULE))
    assert names == ["minutes_since_refresh"] and types == ["float8"]
    [(minutes,)] = rows
    assert 0 <= minutes < 15


def test_dashboard_shows_the_incident(reader, monitored):
    queries = {q.source: q for q in grafana_sql.dashboard_queries(grafana_sql.load_dashboard())}

    def rows_of(title: str) -> tuple[list[str], list]:
        [query] = [q for source, q in queries.items() if source.endswith(repr(title))]
        names, _, rows = _run_as(reader, query)
        return names, rows

    assert rows_of("Stuck batches now")[1] == [(1,)]
    names, rows = rows_of("Unhealthy batches")
    assert names[:2] == ["batch", "bos_batch_id"]
    unhealthy_rows = {row[0]: dict(zip(names, row, strict=True)) for row in rows}
    with connect(monitored.database) as conn:
        healthy_now = {
            row[0]
            for row in conn.execute(
                "select cj_batch_id from cj_monitoring.cj_batch_health"
                " where health_status = 'HEALTHY'"
            )
        }
    assert healthy_now, "the ENG5 runner made no HEALTHY batch"
    assert not healthy_now & set(unhealthy_rows)
    assert rows[0][0] == monitored.incident_batch_id, "the alerting incident comes first"
    unhealthy = unhealthy_rows[monitored.incident_batch_id]
    assert "STUCK_FINALIZATION" in unhealthy["problems"]
    assert unhealthy["inspect_command"] == f"cj-health inspect {monitored.incident_batch_id}"
    assert unhealthy["acknowledged_issues"] == "", "nothing is acknowledged on this database"
    assert unhealthy["runbook_heading"] == "stuck_finalization"
    names, rows = rows_of("Projections coverage by batch")
    coverage = {row[0]: row[1] for row in rows}
    assert coverage[f"batch {monitored.incident_batch_id}"] == 0
    assert all(coverage[f"batch {b}"] == 100 for b in monitored.healthy_batch_ids)


def test_every_alerting_row_is_notified_by_exactly_one_rule(reader, monitored):
    notified: list[tuple[str, str]] = []
    for uid in PER_BATCH_RULES:
        names, _, rows = _run_as(reader, _rule_query(uid))
        static_issue = _rule(uid).get("labels", {}).get("issue")
        for row in rows:
            issue = row[names.index("issue")] if "issue" in names else static_issue
            notified.append((row[names.index("cj_batch_id")], issue))
    with connect(monitored.database) as conn:
        alerting = {
            (str(batch), issue)
            for batch, issue in conn.execute(
                "select cj_batch_id, issue from cj_monitoring.cj_batch_alerts"
            )
        }
    assert (str(monitored.incident_batch_id), "STUCK_FINALIZATION") in alerting
    assert len(notified) == len(set(notified)), "an alert notified by two rules"
    assert set(notified) == alerting


def test_the_detail_dashboard_shows_one_batch(reader, monitored):
    board = _dashboards()[DETAIL_DASHBOARD_UID]
    queries = {q.source: q for q in grafana_sql.dashboard_queries(board)}
    variables = _variables(reader, monitored.incident_batch_id)

    def rows_of(title: str) -> list[dict[str, Any]]:
        [query] = [q for source, q in queries.items() if source.endswith(repr(title))]
        names, _, rows = _run_as(reader, query, variables)
        return [dict(zip(names, row, strict=True)) for row in rows]

    [batch] = rows_of("Batch")
    assert batch["batch"] == monitored.incident_batch_id
    assert batch["health_status"] == "STUCK_FINALIZATION"
    problems = rows_of("Problems of the batch")
    with connect(monitored.database) as conn:
        alerting = {
            issue
            for (issue,) in conn.execute(
                sql.SQL("select issue from {} where cj_batch_id = %s").format(
                    sql.Identifier(monitoring_schema(), "cj_batch_alerts")
                ),
                (monitored.incident_batch_id,),
            )
        }
    assert {row["problem_code"] for row in problems} == alerting
    assert all(row["alerting_since"] is not None and not row["acknowledged"] for row in problems)
    assert problems[0]["problem_code"] == "STUCK_FINALIZATION", "worst first"
    # Another batch's id shows nothing of the incident; a quote cannot break out of the SQL.
    for other in (monitored.healthy_batch_ids[0], "1' or '1'='1"):
        variables["cj_batch_id"] = str(other)
        assert all(row["batch"] != monitored.incident_batch_id for row in rows_of("Batch"))
        assert rows_of("Problems of the batch") == []


def test_every_runbook_heading_a_row_links_exists(reader, monitored):
    anchors = heading_anchors(_runbook())
    checked = 0
    for batch in (monitored.incident_batch_id, *monitored.healthy_batch_ids):
        variables = _variables(reader, batch)
        for board in _dashboards().values():
            for query in grafana_sql.dashboard_queries(board):
                if " as runbook_heading" not in query.raw_sql:
                    continue
                names, _, rows = _run_as(reader, query, variables)
                for row in rows:
                    heading = row[names.index("runbook_heading")]
                    assert heading in anchors, f"{query.source}: no heading #{heading}"
                    checked += 1
    assert checked >= 4, "the incident's rows link the runbook"


def _alert_instances(reader: Database) -> list[dict[str, str]]:
    """The label sets Grafana would fire now: per per-batch rule, its labels, its title as
    alertname and the string columns of each row of its query."""
    instances = []
    for uid in PER_BATCH_RULES:
        rule = _rule(uid)
        names, types, rows = _run_as(reader, _rule_query(uid))
        for row in rows:
            labels = {"alertname": rule["title"], **rule.get("labels", {})}
            labels.update(
                (name, value)
                for name, kind, value in zip(names, types, row, strict=True)
                if kind in STRING_TYPES
            )
            instances.append(labels)
    return instances


def _receiver_and_group(route: dict[str, Any], labels: dict[str, str]) -> tuple[str, tuple]:
    """Alertmanager's routing for `=` matchers: the first matching child route (no
    `continue`), else the route itself; the group is the values of its group_by labels."""
    for child in route.get("routes", []):
        if all(labels.get(name) == value for name, _, value in child["object_matchers"]):
            return _receiver_and_group(child, labels)
    return route["receiver"], tuple(labels.get(name, "") for name in route["group_by"])


def test_the_incident_makes_one_notification_per_receiver_listing_its_codes(reader, monitored):
    route = _route()
    groups: dict[tuple[str, tuple], list[str]] = {}
    for labels in _alert_instances(reader):
        matched = all(labels.get(n) == v for n, _, v in route["object_matchers"])
        assert matched, f"an alert the CJ route does not take: {labels}"
        groups.setdefault(_receiver_and_group(route, labels), []).append(labels["issue"])
    incident = str(monitored.incident_batch_id)
    incident_groups = {key: codes for key, codes in groups.items() if incident in key[1]}
    with connect(monitored.database) as conn:
        alerting = sorted(
            issue
            for (issue,) in conn.execute(
                sql.SQL("select issue from {} where cj_batch_id = %s").format(
                    sql.Identifier(monitoring_schema(), "cj_batch_alerts")
                ),
                (monitored.incident_batch_id,),
            )
        )
    assert len(alerting) >= 3, "Batch 20 breaks several rules at once"
    # Several rules fire for the batch, one notification names all its codes.
    assert list(incident_groups) == [("cj-health-paging", (incident,))]
    assert sorted(next(iter(incident_groups.values()))) == alerting


def test_every_problem_code_is_in_every_place(monitored):
    """docs/problem_codes.md, "Adding a problem code": every code dbt built from the macro
    has its row (and the macro's severity) in both docs tables, a runbook heading, and
    exactly one alert rule; no place names a code the macro does not have."""
    with connect(monitored.database) as conn:
        codes = dict(
            conn.execute(
                sql.SQL("select problem_code, severity from {} order by severity_rank").format(
                    sql.Identifier(monitoring_schema(), "cj_problem_codes")
                )
            ).fetchall()
        )
    docs = dict(
        re.findall(
            r"^\| \d+ \| `([A-Z_]+)` \| (\w+) \|",
            (project_dir() / "docs/problem_codes.md").read_text(encoding="utf-8"),
            flags=re.MULTILINE,
        )
    )
    runbook = _runbook()
    runbook_table = dict(re.findall(r"^\| `([A-Z_]+)` \| (\w+) \|", runbook, flags=re.MULTILINE))
    anchors = heading_anchors(runbook)
    named = {
        uid: set(re.findall(r"'([A-Z_]+)'", _rule(uid)["data"][0]["model"]["rawSql"]))
        for uid in (*RULE_ISSUES, OTHER_RULE)
    }
    excluded_by_other = named.pop(OTHER_RULE)
    missed = []
    for code, severity in codes.items():
        for place, table in (("docs/problem_codes.md", docs), ("docs/runbook.md", runbook_table)):
            if table.get(code) != severity:
                missed.append(f"{code}: {place} table says {table.get(code)}, macro {severity}")
        if code.lower() not in anchors:
            missed.append(f"{code}: no heading #{code.lower()} in docs/runbook.md")
        takers = [uid for uid, taken in named.items() if code in taken]
        takers += [OTHER_RULE] if code not in excluded_by_other else []
        if len(takers) != 1:
            missed.append(f"{code}: notified by {takers or 'no rule'}")
    dashboard_literals = {
        literal
        for board in _dashboards().values()
        for literal in re.findall(r"'([A-Z][A-Z_]+)'", json.dumps(board))
    }
    statuses = {"HEALTHY", "IN_PROGRESS", "FAILED"}
    for place, listed in (
        ("docs/problem_codes.md", set(docs)),
        ("docs/runbook.md", set(runbook_table)),
        ("the alert rules", set().union(*named.values(), excluded_by_other)),
        ("the dashboards", dashboard_literals - statuses),
    ):
        missed += [f"{code}: in {place}, not in cj_problem_codes()" for code in listed - set(codes)]
    assert missed == []


# --- the same files on a monitoring schema of another name ----------------------------------

OTHER_SCHEMA = "cj_health_elsewhere"


@pytest.fixture(scope="module")
def monitored_elsewhere(admin_db, schema_template, tmp_path_factory) -> Iterator[MonitoredDatabase]:
    """The monitoring built with CJ_MONITORING_SCHEMA set to another name (the variable only
    for the build: the other tests of this module use the default)."""
    with cloned_database(admin_db, schema_template) as database:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("CJ_MONITORING_SCHEMA", OTHER_SCHEMA)
            built = build_monitored_database(database, tmp_path_factory.mktemp("elsewhere"))
        yield built


def test_every_query_runs_on_a_monitoring_schema_of_another_name(monitored_elsewhere):
    database = monitored_elsewhere.database
    with connect(database) as conn:
        schemas = {row[0] for row in conn.execute("select nspname from pg_namespace")}
    assert OTHER_SCHEMA in schemas and "cj_monitoring" not in schemas
    with reader_login(database, schema=OTHER_SCHEMA) as reader:
        _run_everything(reader, monitored_elsewhere.incident_batch_id)
        names, _, rows = _run_as(reader, _rule_query("cj-stuck-finalization"))
        assert [row[names.index("cj_batch_id")] for row in rows] == [
            str(monitored_elsewhere.incident_batch_id)
        ]
    # A login without the search_path finds nothing: the rule errors (and so notifies), it
    # never reports nothing wrong.
    with (
        reader_login(database, schema="public") as lost,
        grafana_connect(lost) as conn,
        pytest.raises(psycopg_errors.UndefinedTable),
    ):
        conn.execute(
            expand_macros(_rule_query("cj-stuck-finalization").raw_sql, time_from=FROM, time_to=TO)
        )
