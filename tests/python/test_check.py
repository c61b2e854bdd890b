"""`cj-health check`: the GX context is generated from the dbt project's own rule definitions
(so the two cannot drift), holds no secret, and its checkpoint runs for real against
PostgreSQL: exit 0 on healthy data, 1 with the failing batches listed, 2 with one clear line
when it cannot run.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
from conftest import eng5_template

from cj_health import cli
from cj_health.check import CheckReport, run_check
from cj_health.db import Database, connect
from cj_health.errors import CjHealthError
from cj_health.faults import break_batch
from cj_health.gx import context as gx_context
from cj_health.gx.connection import CONNECTION_VARIABLE, sqlalchemy_url
from cj_health.gx.invariants import (
    INVARIANTS_DIR,
    dbt_vars,
    load_invariants,
    render_invariant,
)
from cj_health.gx.run import RuleResult
from cj_health.paths import project_dir

ROOT = gx_context.default_root()
PROJECT = project_dir()


def suite_expectations() -> dict[str, dict]:
    """Every expectation of the checked-in suites, by its rule name."""
    found = {}
    for path in sorted((ROOT / "expectations").glob("*.json")):
        for expectation in json.loads(path.read_text())["expectations"]:
            found[expectation["meta"]["rule"]] = {**expectation, "suite": path.stem}
    return found


def gx_sql(query: str, subject: str) -> str:
    """An unexpected_rows_query as the SQL it runs on a whole-table batch of `subject`."""
    return query.replace("{batch}", subject).replace("{{", "{").replace("}}", "}")


def render_dbt_test(test_name: str) -> str:
    """Render a dbt singular test file the way dbt does, with plain jinja2: `ref()` gives the
    model name, `cj_threshold()` the var's value from dbt_project.yml, the invariant macros
    are in scope."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    for path in sorted((PROJECT / INVARIANTS_DIR).glob("*.sql")):
        module = env.from_string(path.read_text()).module
        for name in dir(module):
            if not name.startswith("_"):
                env.globals[name] = getattr(module, name)
    variables = dbt_vars(PROJECT)
    env.globals["ref"] = lambda name: name
    env.globals["cj_threshold"] = lambda name: variables[name]
    text = (PROJECT / "tests" / "dbt" / "invariants" / f"{test_name}.sql").read_text()
    return env.from_string(text).render()


def normalised(sql_text: str) -> str:
    return " ".join(sql_text.split())


# --- the checked-in context: generated, consistent with dbt, no secrets ------------------


def test_checked_in_context_is_exactly_what_generation_produces() -> None:
    changed = gx_context.differences(ROOT, gx_context.generate())
    assert changed == [], (
        f"great_expectations/ differs from the dbt project's rules in {changed}: run "
        "`cj-health check` (or cj_health.gx.context.write) and commit the result"
    )


def test_generation_is_deterministic() -> None:
    assert gx_context.generate() == gx_context.generate()


def test_every_invariant_is_one_gx_expectation_running_the_dbt_tests_own_sql() -> None:
    expectations = suite_expectations()
    invariants = load_invariants(PROJECT)
    assert {i.number for i in invariants} >= set(range(1, 10)), "invariants 1-9 must be listed"
    for invariant in invariants:
        expectation = expectations[invariant.name]
        assert expectation["type"] == "unexpected_rows_expectation"
        assert expectation["suite"] == invariant.subject
        query = expectation["kwargs"]["unexpected_rows_query"]
        assert "{batch}" in query, f"{invariant.name} must validate its own asset's batch"
        dbt_sql = render_dbt_test(invariant.dbt_test)
        assert normalised(gx_sql(query, invariant.subject)) == normalised(dbt_sql), (
            f"GX and dbt run different SQL for {invariant.name}"
        )
        assert normalised(dbt_sql) == normalised(render_invariant(PROJECT, invariant))


def test_every_expectation_has_a_description_in_plain_words() -> None:
    for rule, expectation in suite_expectations().items():
        description = expectation.get("description") or ""
        assert len(description.split()) >= 5, f"{rule} needs a description in plain words"
        assert "select" not in description.lower(), f"{rule}: describe the rule, not its SQL"


def test_the_health_views_column_tests_are_expectations_too() -> None:
    expectations = suite_expectations()
    for rule in (
        "cj_batch_health.cj_batch_id.unique",
        "cj_batch_health.cj_batch_id.not_null",
        "cj_batch_health.scale_separation_reliability.in_range",
        "cj_batch_health.health_status.known_problem_codes",
        "cj_batch_health.upload_status.in_schema_enum",
        "cj_batch_health.cj_state.in_schema_enum",
    ):
        assert expectations[rule]["suite"] == "cj_batch_health", rule
    codes = expectations["cj_batch_health.health_status.known_problem_codes"]["kwargs"]
    assert {"STUCK_FINALIZATION", "LOW_RELIABILITY", "HEALTHY"} <= set(codes["value_set"])


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
    report = run_check(database, context_root=context_copy, regenerate=False)
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
    assert gx_context.differences(ROOT, gx_context.generate()) == [], "check left a diff"


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
        regenerated=[],
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
    health = context_copy / "expectations" / "cj_batch_health.json"
    health.write_text(health.read_text().replace('"column": "cj_state"', '"column": "no_state"'))
    with pytest.raises(CjHealthError) as error:
        run_check(database, context_root=context_copy, regenerate=False, refresh=False)
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
        run_check(database, context_root=context_copy, regenerate=False)


def test_a_validation_naming_a_missing_suite_fails_with_its_name(built, context_copy) -> None:
    database, _ = built
    definition = context_copy / "validation_definitions" / "int_batch_facts.json"
    document = json.loads(definition.read_text())
    document["suite"] = {"name": "no_such_suite", "id": str(uuid.uuid4())}
    definition.write_text(json.dumps(document))
    with pytest.raises(CjHealthError, match="no_such_suite") as error:
        run_check(database, context_root=context_copy, regenerate=False, refresh=False)
    assert "\n" not in str(error.value)
