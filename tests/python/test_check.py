"""`cj-health check`: the GX context is generated from the rules dbt compiles (so the two
cannot drift), holds no secret, and its checkpoint runs for real against PostgreSQL: exit 0 on
healthy data, 1 with the failing batches listed, 2 with one clear line when it cannot run.
`check` reads the checked-in context and writes only under great_expectations/uncommitted/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import eng5_template

from cj_health import cli
from cj_health.check import CheckReport, run_check
from cj_health.db import Database, connect
from cj_health.eng5.faults import break_batch
from cj_health.errors import CjHealthError
from cj_health.gx import context as gx_context
from cj_health.gx import generate as gx_generate
from cj_health.gx.connection import CONNECTION_VARIABLE, sqlalchemy_url
from cj_health.gx.rules import INVARIANT_TESTS_DIR, compile_manifest, rules_from_manifest
from cj_health.gx.run import RuleResult
from cj_health.paths import project_dir

ROOT = gx_context.default_root()
PROJECT = project_dir()


@pytest.fixture(scope="module")
def manifest() -> dict:
    """dbt's manifest after `dbt compile` of the project's data tests (no database needed)."""
    return compile_manifest()


def suite_expectations() -> dict[str, dict]:
    """Every expectation of the checked-in suites, by its rule name."""
    found = {}
    for path in sorted((ROOT / "expectations").glob("*.json")):
        for expectation in json.loads(path.read_text())["expectations"]:
            found[expectation["meta"]["rule"]] = {**expectation, "suite": path.stem}
    return found


def unqualified(compiled: str, manifest: dict) -> str:
    """dbt's compiled SQL with each model's "database"."schema"."name" as its "name"."""
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model":
            compiled = compiled.replace(node["relation_name"], f'"{node["name"]}"')
    return compiled


def normalised(sql_text: str) -> str:
    return " ".join(sql_text.split())


def git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=PROJECT, capture_output=True, text=True, check=True,
    ).stdout


# --- the checked-in context: generated, consistent with dbt, no secrets ------------------


def test_checked_in_context_is_exactly_what_generation_produces(built) -> None:
    database, _ = built
    changed = gx_context.differences(ROOT, gx_generate.generate_from_dbt(database))
    assert changed == [], (
        f"great_expectations/ differs from the rules dbt compiles in {changed}: run `make gx` "
        "and commit the result"
    )


def rule_queries(manifest: dict) -> dict[str, dict]:
    return {rule.rule: rule.kwargs for rule in rules_from_manifest(manifest)}


def test_generated_rules_name_no_database_or_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suites run on any target: compiled for another monitoring schema, the rules are the
    checked-in ones, and they name neither the schema nor the database dbt compiled for."""
    monkeypatch.setenv("CJ_MONITORING_SCHEMA", "elsewhere_monitoring")
    rules = rule_queries(compile_manifest())
    assert rules == {rule: e["kwargs"] for rule, e in suite_expectations().items()}
    text = "".join(str(value) for kwargs in rules.values() for value in kwargs.values())
    assert "elsewhere_monitoring" not in text and "cj_rules" not in text
    assert '"."' not in text


def test_dbt_vars_reach_the_gx_rules() -> None:
    rule = "complete_upload_is_completed"
    checked_in = suite_expectations()[rule]["kwargs"]["unexpected_rows_query"]
    assert re.search(r"interval '1 minute' \* 5(\.0)?\b", checked_in)
    query = rule_queries(compile_manifest({"stuck_after_minutes": 77}))[rule]
    query = query["unexpected_rows_query"]
    assert re.search(r"interval '1 minute' \* 77\b", query)
    threshold = re.compile(r"interval '1 minute' \* [0-9.]+")
    assert normalised(threshold.sub("N", query)) == normalised(threshold.sub("N", checked_in))


def test_every_invariant_is_one_gx_expectation_running_the_dbt_tests_own_sql(
    manifest: dict,
) -> None:
    expectations = suite_expectations()
    by_test = {e["meta"].get("dbt_test"): e for e in expectations.values()}
    singular = [
        node for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        and node["original_file_path"].startswith(INVARIANT_TESTS_DIR)
    ]
    numbers = {by_test[node["name"]]["meta"].get("invariant") for node in singular}
    assert numbers >= set(range(1, 10)), "invariants 1-9 must each be a GX rule"
    for node in singular:
        expectation = by_test[node["name"]]
        subject = node["refs"][0]["name"]
        assert expectation["type"] == "unexpected_rows_expectation"
        assert expectation["suite"] == subject
        query = expectation["kwargs"]["unexpected_rows_query"]
        assert "{batch}" in query, f"{node['name']} must validate its own asset's batch"
        gx_text = re.sub(r"\{batch\}( as " + subject + ")?", f'"{subject}"', query)
        gx_text = gx_text.replace("{{", "{").replace("}}", "}")
        assert normalised(gx_text.replace("\\:", ":")) == normalised(
            unqualified(node["compiled_code"], manifest)
        ), f"GX and dbt run different SQL for {node['name']}"


@pytest.mark.unit
def test_every_expectation_has_a_description_in_plain_words() -> None:
    for rule, expectation in suite_expectations().items():
        description = expectation.get("description") or ""
        assert len(description.split()) >= 5, f"{rule} needs a description in plain words"
        assert "select" not in description.lower(), f"{rule}: describe the rule, not its SQL"


@pytest.mark.unit
def test_the_health_views_column_tests_are_expectations_too() -> None:
    expectations = suite_expectations()
    for rule in (
        "cj_batch_health.cj_batch_id.unique",
        "cj_batch_health.cj_batch_id.not_null",
        "cj_batch_health.scale_separation_reliability.in_range",
        "cj_batch_health.health_status.known_problem_codes",
    ):
        assert expectations[rule]["suite"] == "cj_batch_health", rule
    for rule, suite, value in (
        ("stg_cj__batch_uploads.upload_status.accepted_values", "stg_cj__batch_uploads",
         "COMPLETE_STABLE"),
        ("stg_cj__batch_states.cj_state.accepted_values", "stg_cj__batch_states",
         "WAITING_CALLBACKS"),
    ):
        assert expectations[rule]["suite"] == suite, rule
        assert value in expectations[rule]["kwargs"]["value_set"]
    codes = expectations["cj_batch_health.health_status.known_problem_codes"]["kwargs"]
    for code in ("STUCK_FINALIZATION", "LOW_RELIABILITY", "HEALTHY"):
        assert f"'{code}'" in codes["unexpected_rows_query"]


@pytest.mark.unit
def test_checked_in_files_hold_no_connection_string_and_nothing_uncommitted() -> None:
    config = (ROOT / "great_expectations.yml").read_text()
    assert "connection_string: ${" + CONNECTION_VARIABLE + "}" in config
    assert "analytics_enabled: false" in config
    for path in ROOT.rglob("*"):
        if path.is_file() and "uncommitted" not in path.parts:
            text = path.read_text()
            assert not re.search(r"postgres(ql)?(\+\w+)?://[\w@/%]", text), path
            assert "password" not in text.lower(), path
    assert (ROOT / ".gitignore").read_text().strip() == "uncommitted/"


@pytest.mark.unit
def test_the_sqlalchemy_url_names_its_driver_and_the_search_path() -> None:
    socket = Database("user=cj dbname=cj_dev host=/tmp/sock port=5433")
    url = sqlalchemy_url(socket)
    assert url.startswith("postgresql+psycopg://cj@/cj_dev?")
    assert "host=%2Ftmp%2Fsock" in url and "port=5433" in url
    assert "options=-csearch_path%3Dcj_monitoring%2Cpublic" in url
    tcp = sqlalchemy_url(Database("postgresql://u:s%40cr%3At@db.example:6432/cj?sslmode=require"))
    assert tcp.startswith("postgresql+psycopg://u:s%40cr%3At@db.example:6432/cj?")
    assert "sslmode=require" in tcp


# --- the checkpoint on a real database --------------------------------------------------


@pytest.fixture(scope="module")
def built_template(admin_db: Database, tmp_path_factory) -> Iterator[tuple[str, list[int]]]:
    """Three healthy ENG5 batches with the monitoring models built (cloned for each test)."""
    from cj_health.build import BUILD_ARGS
    from cj_health.dbt_runner import run_dbt

    with eng5_template(admin_db, (11, 12, 13), tmp_path_factory.mktemp("runs")) as (name, ids):
        models = run_dbt(admin_db.with_dbname(name), BUILD_ARGS)  # the models; no dbt tests
        assert models.ok, models.output[-2000:]
        yield name, ids


@pytest.fixture
def built(make_database, built_template) -> tuple[Database, list[int]]:
    name, ids = built_template
    return make_database(template=name), ids


@pytest.fixture
def context_copy(tmp_path: Path) -> Path:
    """A private copy of the checked-in context (Data Docs and edits stay in tmp_path)."""
    root = tmp_path / "great_expectations"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns("uncommitted"))
    return root


def test_check_passes_on_healthy_data_and_writes_data_docs(built, context_copy) -> None:
    database, _ = built
    report = run_check(database, context_root=context_copy)
    assert report.exit_code == 0, "\n".join(report.table_lines())
    assert report.success and report.failing_batches == []
    assert len(report.rules) == len(suite_expectations())
    assert report.data_docs_path == context_copy / gx_context.DATA_DOCS_DIR / "index.html"
    assert report.data_docs_path.is_file()
    assert "all rules hold" in report.table_lines()[-1]


def test_cli_check_fails_names_the_broken_batches_and_never_shows_essay_text(
    built, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    database, (healthy, counters, flags) = built
    break_batch(database, "counter_mismatch", counters)
    break_batch(database, "anchor_flags_lost", flags)
    monkeypatch.setenv("CJ_DATABASE_URL", database.url)
    assert cli.main(["check", "--json"]) == 1
    out = capsys.readouterr().out
    summary = json.loads(out)
    assert {"success", "rules", "data_docs", "failing_batches"} <= set(summary)
    assert summary["success"] is False
    for rule in summary["rules"]:
        assert {"rule", "success", "failing_batches", "description"} <= set(rule)
    by_rule = {rule["rule"]: rule for rule in summary["rules"]}
    assert by_rule["counters_match_pairs"]["failing_batches"] == [counters]
    assert by_rule["anchor_flag_agrees"]["failing_batches"] == [flags]
    assert by_rule["no_batch_alerting"]["failing_batches"] == [counters, flags]
    assert summary["failing_batches"] == [counters, flags]
    assert healthy not in summary["failing_batches"]
    docs = Path(summary["data_docs"])
    assert docs.is_file()
    with connect(database) as conn:
        texts = [
            row[0]
            for row in conn.execute(
                "select assessment_input_text from cj_processed_essays where cj_batch_id = %s",
                (flags,),
            )
        ]
    written = out + "".join(
        path.read_text(errors="ignore")
        for path in docs.parent.rglob("*")
        if path.is_file() and path.suffix in (".html", ".json")
    )
    assert texts and not any(text in written for text in texts)


@pytest.mark.skipif(not (PROJECT / ".git").exists(), reason="not a git checkout")
def test_build_and_check_leave_the_working_tree_as_it_was(
    built, monkeypatch: pytest.MonkeyPatch
) -> None:
    database, (healthy, counters, _) = built
    break_batch(database, "counter_mismatch", counters)
    monkeypatch.setenv("CJ_DATABASE_URL", database.url)
    before = git_status()
    assert cli.main(["build"]) == 1
    assert cli.main(["check"]) == 1
    assert git_status() == before, "build or check changed files that git tracks"


@pytest.mark.unit
def test_the_table_lists_rule_status_and_failing_batches() -> None:
    report = CheckReport(
        success=False,
        rules=[
            RuleResult("counters_match_pairs", "int_batch_facts", False, "d", [7, 9], 2),
            RuleResult("anchor_references_unique", "stg", False, "d", [], 3),
            RuleResult("cj_batch_health.cj_batch_id.unique", "cj_batch_health", True, "d"),
            RuleResult("no_batch_alerting", "cj_batch_health", False, "d", list(range(1, 12))),
        ],
        data_docs_path=Path("/x/index.html"),
    )
    lines = report.table_lines()
    assert lines[0].split() == ["rule", "status", "failing", "batches"]
    assert re.match(r"counters_match_pairs\s+FAIL\s+7, 9$", lines[1])
    assert re.match(r"anchor_references_unique\s+FAIL\s+\(3 rows\)$", lines[2])
    assert re.match(r"cj_batch_health.cj_batch_id.unique\s+ok\s+-$", lines[3])
    assert lines[4].endswith("1, 2, 3, 4, 5, 6, 7, 8 (+3 more)")
    assert lines[-1] == "3 of 4 rules FAIL; Data Docs: /x/index.html"
    assert report.exit_code == 1 and report.failing_batches == list(range(1, 12))


def test_check_without_the_models_says_to_build_first(
    cj_env: Database, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert cli.main(["check"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "cj_monitoring.cj_batch_health" in err and "cj-health build" in err


def test_suites_naming_missing_columns_fail_with_their_names(built, context_copy) -> None:
    database, _ = built
    suite = context_copy / "expectations" / "int_batch_facts.json"
    document = json.loads(suite.read_text())
    document["expectations"][0]["kwargs"]["unexpected_rows_query"] = (
        "select cj_batch_id, no_such_column from {batch} where no_such_column"
    )
    suite.write_text(json.dumps(document))
    states = context_copy / "expectations" / "stg_cj__batch_states.json"
    states.write_text(states.read_text().replace('"column": "cj_state"', '"column": "no_state"'))
    with pytest.raises(CjHealthError) as error:
        run_check(database, context_root=context_copy, refresh=False)
    message = str(error.value)
    assert "no_such_column" in message and "no_state" in message
    assert "\n" not in message and "Traceback" not in message


def test_an_asset_naming_a_missing_table_fails_with_its_name(built, context_copy) -> None:
    database, _ = built
    config = context_copy / "great_expectations.yml"
    config.write_text(
        config.read_text().replace("table_name: int_batch_facts", "table_name: no_such_table")
    )
    with pytest.raises(CjHealthError, match="no_such_table.*cj-health build"):
        run_check(database, context_root=context_copy)


def test_a_validation_naming_a_missing_suite_fails_with_its_name(built, context_copy) -> None:
    database, _ = built
    definition = context_copy / "validation_definitions" / "int_batch_facts.json"
    document = json.loads(definition.read_text())
    document["suite"] = {"name": "no_such_suite", "id": str(uuid.uuid4())}
    definition.write_text(json.dumps(document))
    with pytest.raises(CjHealthError, match="no_such_suite") as error:
        run_check(database, context_root=context_copy, refresh=False)
    assert "\n" not in str(error.value)
