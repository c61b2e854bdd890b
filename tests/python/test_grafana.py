"""The Grafana provisioning files, proven without a running Grafana.

Static checks: every file loads, matches the models of the pinned grafana-foundation-sdk (the
dashboard, the alert rules and their queries and expressions) or, where the SDK has no model
(datasource, dashboard provider, the alert-rule file wrapper), Grafana's documented
file-provisioning format. Every datasource uid is the provisioned one, every rule's condition
names a refId it defines, every runbook_url lands on a heading of docs/runbook.md.

Database checks: on a database built by the ENG5 runner with the Batch 20 incident replayed,
every panel's and rule's SQL runs, macros expanded, as a login in cj_health_reader, and the
stuck-finalization rule returns the incident batch and no healthy batch.
"""

from __future__ import annotations

import json
import re
import tomllib
import typing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

import pytest
from grafana_foundation_sdk.cog import plugins, runtime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting, dashboard, expr
from reader_support import MonitoredDatabase, monitored_database, reader_login

from cj_health.bench import grafana_sql
from cj_health.bench.grafana_sql import (
    DATASOURCE_TYPE,
    EXPRESSION_DATASOURCE_UID,
    MacroError,
    expand_macros,
)
from cj_health.db import Database, connect
from cj_health.paths import project_dir
from cj_health.runs import SCHEDULE_MINUTES

plugins.register_default_plugins()

DATASOURCE_UID = "cj-health-postgres"
MONITORING_VIEWS = (
    "cj_monitoring.cj_batch_health",
    "cj_monitoring.cj_batch_alerts",
    "cj_monitoring.cj_batch_health_refresh",
)
# The monitoring's own tables over time, which the history, incident and run panels read.
MONITORING_TABLES = (
    "cj_monitoring.cj_health_history",
    "cj_monitoring.cj_batch_incidents",
    "cj_monitoring.cj_monitoring_runs",
)
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


def _github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors: set[str] = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


def _rules() -> list[dict[str, Any]]:
    rules_file = grafana_sql.load_yaml(grafana_sql.alert_rules_path())
    return [rule for group in rules_file["groups"] for rule in group["rules"]]


def _rule(uid: str) -> dict[str, Any]:
    return next(rule for rule in _rules() if rule["uid"] == uid)


def _panel(title: str) -> dict[str, Any]:
    return next(p for p in grafana_sql.load_dashboard()["panels"] if p["title"] == title)


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
    assert grafana_sql.dashboard_path().suffix == ".json"


def _rules_folder() -> str:
    [group] = grafana_sql.load_yaml(grafana_sql.alert_rules_path())["groups"]
    return group["folder"]


# --- the dashboard -------------------------------------------------------------------------


def test_dashboard_matches_the_sdk_model():
    raw = grafana_sql.load_dashboard()
    reparsed = _round_trip(dashboard.Dashboard.from_json(raw))
    assert _lost_keys(raw, reparsed) == []
    assert raw["title"] == "CJ batch health"
    assert 8 <= len(raw["uid"]) <= 40
    known_panel_types = set(runtime.Runtime().panelcfg_variants)
    ids = [panel["id"] for panel in raw["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in raw["panels"]:
        assert panel["type"] in known_panel_types, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"


def test_dashboard_has_the_panels_on_call_needs():
    stuck = _panel("Stuck batches now")
    assert stuck["type"] == "stat"
    steps = stuck["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[0] == {"color": "green", "value": None}
    assert steps[-1]["color"] == "red" and 0 < steps[-1]["value"] <= 1, "red above 0"
    assert "cj_monitoring.cj_batch_alerts" in stuck["targets"][0]["rawSql"]

    assert "group by health_status" in _panel("Batches by health status")["targets"][0]["rawSql"]
    unhealthy_sql = _panel("Unhealthy batches")["targets"][0]["rawSql"]
    assert "'cj-health inspect ' || cj_batch_id" in unhealthy_sql
    assert "projection_count" in _panel("Projections coverage by batch")["targets"][0]["rawSql"]
    assert "scale_separation_reliability" in _panel("Reliability")["targets"][0]["rawSql"]
    assert "now() - max(refreshed_at)" in _panel("View age")["targets"][0]["rawSql"]
    for query in grafana_sql.dashboard_queries(grafana_sql.load_dashboard()):
        assert any(
            relation in query.raw_sql for relation in (*MONITORING_VIEWS, *MONITORING_TABLES)
        ), query.source
    assert "cj_monitoring.cj_health_history" in (
        _panel("Alerting batches by problem code over time")["targets"][0]["rawSql"]
    )
    assert _panel("Batches by health status over time")["type"] == "timeseries"
    assert "cleared_at - first_seen_at" in (
        _panel("Time to resolve by problem code")["targets"][0]["rawSql"]
    )


def test_every_panel_uses_the_provisioned_datasource():
    raw = grafana_sql.load_dashboard()
    for panel in raw["panels"]:
        assert panel["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert target["rawQuery"] is True and target["editorMode"] == "code"
            assert target["format"] in {"table", "time_series"}


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
        assert "cj_monitoring.cj_batch_alerts" in sql, uid
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
        assert "cj_monitoring.cj_monitoring_runs" in rules[uid]["data"][0]["model"]["rawSql"]
        assert rules[uid]["labels"]["severity"] in {"critical", "warning"}
    # The dead man's switch: twice each documented interval (cj_health.runs.SCHEDULE_MINUTES).
    overdue = rules["cj-monitoring-overdue"]
    schedule = ", ".join(f"('{c}', {m})" for c, m in SCHEDULE_MINUTES.items())
    assert f"(values {schedule})" in overdue["data"][0]["model"]["rawSql"]
    threshold = next(q for q in overdue["data"] if q["refId"] == overdue["condition"])["model"]
    assert threshold["conditions"][0]["evaluator"] == {"type": "gt", "params": [2]}


def test_every_rule_explains_itself_and_links_an_existing_runbook_heading():
    anchors = _github_anchors((project_dir() / "docs" / "runbook.md").read_text(encoding="utf-8"))
    for rule in _rules():
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule["uid"]
        if rule["uid"] in RUN_RULES:
            assert "{{ $labels.command }}" in annotations["description"], rule["uid"]
        elif rule["uid"] != STALE_RULE:
            assert "{{ $labels.cj_batch_id }}" in annotations["description"], rule["uid"]
        url, _, anchor = annotations["runbook_url"].partition("#")
        # The base is set once, in Grafana's environment; provisioning expands `${VAR}` in
        # annotations.
        assert url == "${CJ_RUNBOOK_BASE_URL}/docs/runbook.md", rule["uid"]
        assert anchor in anchors, f"{rule['uid']}: no heading #{anchor} in docs/runbook.md"


def test_the_dashboard_links_the_same_runbook_as_the_rules():
    """Dashboard files get no environment expansion: the link is the placeholder host the
    runbook's install step replaces, on the same path as the rules' links."""
    [link] = grafana_sql.load_dashboard()["links"]
    rule_paths = {
        rule["annotations"]["runbook_url"].partition("#")[0].removeprefix("${CJ_RUNBOOK_BASE_URL}")
        for rule in _rules()
    }
    assert link["url"].startswith("https://")
    assert rule_paths == {"/docs/runbook.md"} and link["url"].endswith("/docs/runbook.md")


def test_notifications_link_each_alerts_runbook_url():
    """Templates are not expanded for environment variables: the link is the annotation."""
    text = (project_dir() / "grafana/provisioning/alerting/cj_health_templates.yaml").read_text()
    assert "{{ .Annotations.runbook_url }}" in text and "${" not in text


def test_runbook_links_inside_the_runbook_resolve():
    text = (project_dir() / "docs" / "runbook.md").read_text(encoding="utf-8")
    anchors = _github_anchors(text)
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in anchors, f"docs/runbook.md links to missing #{anchor}"


# --- macro expansion -----------------------------------------------------------------------

FROM = datetime(2025, 11, 14, 8, 0, 0, tzinfo=UTC)
TO = FROM + timedelta(hours=6)


def test_expand_macros_like_grafanas_postgres_datasource():
    sql = "select $__time(created_at) from t where $__timeFilter(created_at)"
    assert expand_macros(sql, time_from=FROM, time_to=TO) == (
        "select created_at as \"time\" from t where created_at between "
        "'2025-11-14T08:00:00Z' and '2025-11-14T14:00:00Z'"
    )
    assert expand_macros("$__timeFrom() $__timeTo()", time_from=FROM, time_to=TO) == (
        "'2025-11-14T08:00:00Z' '2025-11-14T14:00:00Z'"
    )
    epoch = expand_macros("$__unixEpochFilter(ts)", time_from=FROM, time_to=TO)
    assert epoch == f"ts >= {int(FROM.timestamp())} and ts <= {int(TO.timestamp())}"
    assert expand_macros("$__interval_ms", time_from=FROM, time_to=TO, interval_seconds=5) == "5000"


@pytest.mark.parametrize("sql", ["select $__timeGroup(t, '5m')", "select $batch", "select $__x"])
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


def _run_as(reader: Database, query: grafana_sql.GrafanaQuery) -> tuple[list[str], list, list]:
    """Expand the macros over the dashboard's default range and run it; return the column
    names, their PostgreSQL type names and the rows."""
    now = datetime.now(UTC)
    expanded = expand_macros(query.raw_sql, time_from=now - timedelta(days=7), time_to=now)
    with connect(reader) as conn:
        cursor = conn.execute(expanded)
        rows = cursor.fetchall()
        names = [column.name for column in cursor.description]
        types = [conn.adapters.types.get(column.type_code).name for column in cursor.description]
    return names, types, rows


def _all_queries() -> list[grafana_sql.GrafanaQuery]:
    return grafana_sql.dashboard_queries(grafana_sql.load_dashboard()) + grafana_sql.rule_queries(
        grafana_sql.load_yaml(grafana_sql.alert_rules_path())
    )


def test_every_panel_and_rule_query_runs_as_the_reader(reader):
    queries = _all_queries()
    assert len(queries) >= 9 + 5
    for query in queries:
        assert query.datasource_uid == DATASOURCE_UID, query.source
        try:
            _run_as(reader, query)
        except Exception as exc:  # name the panel or rule, not only the SQL error
            pytest.fail(f"{query.source}: {type(exc).__name__}: {exc}")


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
