"""The data rules GX checks, as dbt compiles them: one definition, one compiler.

`compile_manifest()` runs `dbt compile` for the project's data tests (no database needed:
`--no-populate-cache`, nothing introspective) and returns dbt's manifest.json, in which
each test node holds its `compiled_code` with every `ref()`, macro and var resolved
(`dbt_vars` are passed as `--vars`, exactly as `cj-health build` passes them).
`rules_from_manifest()` turns the tests GX checks into rules:

- every singular test in tests/dbt/invariants/ (the invariants: each calls its macro in
  macros/invariants/ with its relations and thresholds, written once, in the test file) runs
  its compiled SQL as an UnexpectedRowsExpectation on its first `ref()` (its subject); the
  description is the invariant macro's, from macros/invariants/_invariants.yml;
- every generic test on cj_batch_health's columns, and every `accepted_values` test (the
  service's enum values), runs on the model it is attached to: `unique`, `not_null` and
  `accepted_values` as GX's own column expectations with dbt's resolved arguments (the same
  rule, and GX lists the failing batches), the project's own generic tests (`in_range`,
  `known_problem_codes`) as their compiled SQL.

The data tests are compiled with the dbt var `cj_gx_rules` set, under which the project's
`ref()` (macros/gx/ref.sql) names each relation without database and schema: the checked-in
suites hold no database or schema name and run on any target, because GX's connection puts
the monitoring schema first on its search_path (cj_health.gx.connection). A rule's subject,
its first `ref()`, is the relation GX hands the query as `{batch}`.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cj_health.db import Database
from cj_health.dbt_runner import dbt_work_dir, run_dbt
from cj_health.errors import CjHealthError
from cj_health.monitoring_tables import HEALTH_VIEW

INVARIANT_TESTS_DIR = "tests/dbt/invariants/"
INVARIANT_MACRO_PREFIX = "invariant_"
COLUMN_EXPECTATIONS = {
    "unique": "expect_column_values_to_be_unique",
    "not_null": "expect_column_values_to_not_be_null",
    "accepted_values": "expect_column_values_to_be_in_set",
}
# Where the subject relation goes in an unexpected_rows_query; GX fills in `{batch}`.
SUBJECT_SENTINEL = "__cj_health_gx_batch__"
BATCH_PLACEHOLDER = "{batch}"
# dbt compiles without a database (`--no-populate-cache`): these connection values are never
# used, and under GX_RULES_VAR no relation name carries them.
GX_RULES_VAR = "cj_gx_rules"
COMPILE_CONNECTION = "host=localhost port=5432 dbname=cj_rules user=cj_health"
_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# SQLAlchemy's text() reads `:name` as a bind parameter (its own pattern); such colons in the
# SQL are escaped with a backslash, which text() turns back into a plain colon.
_BIND_PARAMETER = re.compile(r"(?<![:\w\\]):(?=\w+(?!:))")
_JOIN = re.compile(r"\bjoin\b", re.IGNORECASE)


@dataclass
class Rule:
    """One expectation and the dbt test it runs, as `cj-health check` reports it."""

    rule: str
    asset: str
    description: str
    expectation_type: str
    kwargs: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def compile_manifest(dbt_vars: dict[str, object] | None = None) -> dict[str, Any]:
    """dbt's manifest.json after `dbt compile` of every data test of the project."""
    with dbt_work_dir() as target:
        result = run_dbt(
            Database(COMPILE_CONNECTION),
            [
                "compile", "--no-populate-cache", "--select", "resource_type:test",
                "--target-path", target, "--log-path", target,
            ],
            dbt_vars={**(dbt_vars or {}), GX_RULES_VAR: True},
        )
        if not result.ok:
            lines = [line for line in result.output.splitlines() if "rror" in line]
            cause = (lines or result.output.strip().splitlines() or ["no output"])[-1]
            raise CjHealthError(f"dbt compile of the data tests failed: {cause.strip()}")
        return json.loads((Path(target) / "manifest.json").read_text(encoding="utf-8"))


def rules_from_manifest(manifest: dict[str, Any]) -> list[Rule]:
    """The rules GX checks, in a stable order: the invariants by number, then the column
    rules by relation and name."""
    invariants: list[tuple[int, Rule]] = []
    columns: list[Rule] = []
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test":
            continue
        if node.get("test_metadata") is None:
            if node["original_file_path"].startswith(INVARIANT_TESTS_DIR):
                invariants.append(_invariant_rule(node, manifest))
        elif _is_checked_column_test(node, manifest):
            columns.append(_column_rule(node, manifest))
    rules = [rule for _, rule in sorted(invariants, key=lambda item: (item[0], item[1].rule))]
    rules += sorted(columns, key=lambda rule: (rule.asset, rule.rule))
    names = [rule.rule for rule in rules]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise CjHealthError(f"two data tests make the same GX rule: {', '.join(duplicated)}")
    if not invariants:
        raise CjHealthError(f"dbt compiled no singular test in {INVARIANT_TESTS_DIR}")
    return rules


def _is_checked_column_test(node: dict[str, Any], manifest: dict[str, Any]) -> bool:
    name = node["test_metadata"]["name"]
    attached = manifest["nodes"].get(node.get("attached_node") or "", {})
    return name == "accepted_values" or attached.get("name") == HEALTH_VIEW


def _invariant_rule(node: dict[str, Any], manifest: dict[str, Any]) -> tuple[int, Rule]:
    macros = [
        manifest["macros"][unique_id]
        for unique_id in node["depends_on"]["macros"]
        if unique_id.split(".")[-1].startswith(INVARIANT_MACRO_PREFIX)
    ]
    if len(macros) != 1 or not node["refs"]:
        raise CjHealthError(
            f"{node['original_file_path']} must call one invariant macro "
            f"({INVARIANT_MACRO_PREFIX}*) with ref()s"
        )
    macro = macros[0]
    subject = node["refs"][0]["name"]
    number = (macro.get("meta") or {}).get("invariant")
    meta: dict[str, Any] = {"dbt_test": node["name"], "macro": macro["name"]}
    if number is not None:
        meta["invariant"] = number
    rule = Rule(
        rule=macro["name"][len(INVARIANT_MACRO_PREFIX) :],
        asset=subject,
        description=_plain(macro.get("description")),
        expectation_type="unexpected_rows_expectation",
        kwargs={"unexpected_rows_query": _query(node, subject)},
        meta=meta,
    )
    return (number if isinstance(number, int) else 1000), rule


def _column_rule(node: dict[str, Any], manifest: dict[str, Any]) -> Rule:
    test = node["test_metadata"]["name"]
    arguments = {
        key: value
        for key, value in node["test_metadata"]["kwargs"].items()
        if key not in ("model", "column_name")
    }
    column = node.get("column_name")
    model = manifest["nodes"][node["attached_node"]]["name"]
    if not column:
        raise CjHealthError(f"{node['name']}: GX checks column tests only")
    meta = {"dbt_test": test, "column": column}
    rule = f"{model}.{column}.{test}"
    description = _column_description(test, model, column, arguments)
    if test in COLUMN_EXPECTATIONS:
        kwargs: dict[str, Any] = {"column": column}
        if test == "accepted_values":
            kwargs["value_set"] = list(arguments["values"])
        return Rule(rule, model, description, COLUMN_EXPECTATIONS[test], kwargs, meta)
    return Rule(
        rule, model, description, "unexpected_rows_expectation",
        {"unexpected_rows_query": _query(node, model)}, meta,
    )


def _column_description(test: str, model: str, column: str, arguments: dict[str, Any]) -> str:
    if test == "unique":
        return f"Every {column} occurs once in {model}."
    if test == "not_null":
        return f"{column} is never null in {model}."
    if test == "accepted_values":
        return f"{column} is one of the service's values: {', '.join(arguments['values'])}."
    if test == "in_range":
        low, high = arguments.get("min_value"), arguments.get("max_value")
        return f"{column} lies between {low} and {high} wherever it is set."
    if test == "known_problem_codes":
        also = list(arguments.get("also") or [])
        each = "Every element of " if arguments.get("is_array") else ""
        extra = f" or one of {', '.join(also)}" if also else ""
        return f"{each}{column} is a known problem code (docs/problem_codes.md){extra}."
    return f"dbt test {test} holds for {column} of {model}."


def _query(node: dict[str, Any], subject: str) -> str:
    """The test's compiled SQL as an unexpected_rows_query on its subject's batch."""
    if not _PLAIN_NAME.match(subject):
        raise CjHealthError(f"model name {subject!r} is not a plain lowercase identifier")
    text = node["compiled_code"]
    relation = f'"{subject}"'  # how the project's ref() renders it under GX_RULES_VAR
    if relation not in text or '"."' in text:
        raise CjHealthError(
            f"{node['original_file_path']}: its compiled SQL reads a relation that is not a "
            f"model of the project, or not its subject {subject}"
        )
    return _gx_query(_tidy(text.replace(relation, SUBJECT_SENTINEL)), subject)


def _gx_query(sql_text: str, subject: str) -> str:
    """SQL as an unexpected_rows_query: braces doubled for GX's str.format, the sentinel
    turned into `{batch}`, bind-like colons escaped for SQLAlchemy's text().

    GX substitutes `{batch}` with a subquery: aliased `AS subselect` when the query has no
    JOIN, bare when it has one ("the user takes care of aliasing"). PostgreSQL 15 wants an
    alias on every subquery in FROM, so a query with a JOIN gets `as <subject>` after
    `{batch}` unless the rule already names one."""
    if _JOIN.search(sql_text) and not re.search(
        SUBJECT_SENTINEL + r"\s+as\s+\w", sql_text, re.I
    ):
        sql_text = sql_text.replace(SUBJECT_SENTINEL, f"{SUBJECT_SENTINEL} as {subject}")
    escaped = sql_text.replace("{", "{{").replace("}", "}}")
    escaped = _BIND_PARAMETER.sub(r"\\:", escaped)
    return escaped.replace(SUBJECT_SENTINEL, BATCH_PLACEHOLDER)


def _tidy(compiled: str) -> str:
    """Compiled SQL without the macros' indentation, trailing blanks and empty lines."""
    lines = [line.rstrip() for line in compiled.splitlines() if line.strip()]
    return textwrap.dedent("\n".join(lines))


def _plain(text: str | None) -> str:
    return " ".join(str(text or "").split())
