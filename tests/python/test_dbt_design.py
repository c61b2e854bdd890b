"""The dbt project's design rules that can be read from its files alone.

- No built-in dbt materialization is overridden and no dbt or dbt-postgres macro is redefined:
  the project's materializations have names of their own (`cj_view`, `cj_table`,
  `cj_materialized_view`) and delegate to dbt's macros, so a dbt upgrade changes nothing the
  project silently replaces. The one exception is named, with its reason, in
  docs/dbt_design.md and here.
- Every model of the project says who owns it and every macro says what it does (dbt-score
  rates the project from these; tests/python/test_dbt_score.py runs it on a manifest).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import dbt.include.global_project as dbt_global
import dbt.include.postgres as dbt_postgres
import pytest
import yaml

from cj_health.dbt_runner import dbt_executable

ROOT = Path(__file__).resolve().parents[2]

MACRO = re.compile(r"{%-?\s*macro\s+(\w+)\s*\(")
TEST = re.compile(r"{%-?\s*test\s+(\w+)\s*\(")
MATERIALIZATION = re.compile(r"{%-?\s*materialization\s+(\w+)\s*,")

# Redefined on purpose, with the reason (docs/dbt_design.md, "Adapter macros"): dbt unit tests
# cast their rows to the column types dbt-postgres lists, and it lists a `text[]` column as
# information_schema's bare `ARRAY`, which is no type to cast to.
ALLOWED_REDEFINITIONS = {"postgres__get_columns_in_relation"}


def definitions(folder: Path, pattern: re.Pattern[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.sql")):
        for name in pattern.findall(path.read_text()):
            found[name] = path
    return found


def dbt_macro_names() -> set[str]:
    names: set[str] = set()
    for package in (dbt_global.PACKAGE_PATH, dbt_postgres.PACKAGE_PATH):
        names |= set(definitions(Path(package), MACRO))
    return names


def dbt_materialization_names() -> set[str]:
    names: set[str] = set()
    for package in (dbt_global.PACKAGE_PATH, dbt_postgres.PACKAGE_PATH):
        names |= set(definitions(Path(package), MATERIALIZATION))
    return names


@pytest.mark.unit
def test_dbt_knows_its_own_macros() -> None:
    """The parse below reads dbt's files: it finds what the checks compare against."""
    assert {"table", "view", "materialized_view", "incremental"} <= dbt_materialization_names()
    assert {
        "postgres__get_columns_in_relation",
        "postgres__list_relations_without_caching",
        "postgres__refresh_materialized_view",
        "refresh_materialized_view",
    } <= dbt_macro_names()


@pytest.mark.unit
def test_no_builtin_materialization_is_overridden() -> None:
    ours = definitions(ROOT / "macros", MATERIALIZATION)
    assert ours, "the project's materializations were not found"
    overridden = {
        name: str(path) for name, path in ours.items() if name in dbt_materialization_names()
    }
    assert overridden == {}
    assert all(name.startswith("cj_") for name in ours)


@pytest.mark.unit
def test_no_dbt_macro_is_redefined() -> None:
    ours = definitions(ROOT / "macros", MACRO) | definitions(ROOT / "macros", TEST)
    redefined = {name for name in ours if name in dbt_macro_names()}
    assert redefined - ALLOWED_REDEFINITIONS == set()
    adapter_prefixed = {name for name in ours if re.match(r"(postgres|default)__", name)}
    assert adapter_prefixed - ALLOWED_REDEFINITIONS == set()


@pytest.mark.unit
def test_every_macro_is_described() -> None:
    ours = set(definitions(ROOT / "macros", MACRO))
    ours |= {f"test_{name}" for name in definitions(ROOT / "macros", TEST)}
    ours |= {
        f"materialization_{name}_postgres" for name in definitions(ROOT / "macros", MATERIALIZATION)
    }
    described: set[str] = set()
    for path in (ROOT / "macros").rglob("*.yml"):
        for macro in yaml.safe_load(path.read_text()).get("macros", []):
            if (macro.get("description") or "").strip():
                described.add(macro["name"])
    assert ours - described == set()


@pytest.mark.unit
def test_models_and_seeds_have_an_owner() -> None:
    project = yaml.safe_load((ROOT / "dbt_project.yml").read_text())
    for section in ("models", "seeds"):
        meta = project[section]["cj_batch_health"]["+meta"]
        assert meta["owner"].strip()


def plain_dbt_parse(tmp_path: Path, schema: str) -> subprocess.CompletedProcess[str]:
    """`dbt parse` as an operator runs it by hand, with CJ_MONITORING_SCHEMA set to `schema`
    (parsing opens no connection: the host is never reached)."""
    env = {
        **os.environ,
        "CJ_PGHOST": "127.0.0.1",
        "CJ_PGUSER": "nobody",
        "CJ_PGDATABASE": "nowhere",
        "CJ_MONITORING_SCHEMA": schema,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    return subprocess.run(
        [
            dbt_executable(),
            "parse",
            "--project-dir",
            str(ROOT),
            "--profiles-dir",
            str(ROOT / "profiles"),
            "--target-path",
            str(tmp_path),
            "--log-path",
            str(tmp_path),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("schema", ['cj"; drop schema public cascade; --', "CJ_Monitoring"])
def test_plain_dbt_refuses_a_target_schema_that_is_no_plain_identifier(
    tmp_path: Path, schema: str
) -> None:
    """dbt-postgres puts the schema into string literals from its first query on, before any
    hook runs: the profile refuses it first, naming the setting."""
    result = plain_dbt_parse(tmp_path, schema)
    assert result.returncode != 0
    assert "CJ_MONITORING_SCHEMA must be a plain lowercase identifier" in (
        result.stdout + result.stderr
    )


def test_plain_dbt_takes_a_plain_target_schema(tmp_path: Path) -> None:
    result = plain_dbt_parse(tmp_path, "cj_monitoring_2")
    assert result.returncode == 0, result.stdout[-2000:]
