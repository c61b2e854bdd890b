"""The detection matrix: every fault of the catalogue is caught by every layer.

One database holds healthy ENG5 batches and, beside them, one batch broken by each fault of
cj_health.eng5.faults. After one `cj-health build` (dbt run, then dbt test) and one
`cj-health check`:
- view: `cj_batch_health` shows the fault's problem code on its batch, no healthy batch has
  any issue, and no healthy batch carries any fault's code;
- dbt: some dbt test fails with that batch's cj_batch_id among its stored failing rows;
- gx: `cj-health check` exits 1 with that batch among some rule's failing batches;
- inspect: `cj-health inspect` reports the batch as the view has it, field by field.
A copy of the same healthy batches without the faults keeps all three green (no false
positive). The matrix is printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from psycopg import sql

from cj_health.build import BuildResult, build
from cj_health.db import Database, connect, monitoring_schema
from cj_health.eng5.faults import FAULTS, break_batch
from cj_health.paths import project_dir
from cj_health.schema import init_schema

HEALTHY_BATCHES = 3


@dataclass
class Layers:
    """What each layer said about one database."""

    issues: dict[int, list[str]]  # cj_batch_health: batch -> issues
    build: BuildResult
    dbt_caught: dict[int, set[str]]  # batch -> failing dbt tests whose rows name it
    check_exit: int
    check_summary: dict
    gx_caught: dict[int, set[str]] = field(default_factory=dict)  # batch -> failing GX rules


def _create_database(admin: Database, template: str | None = None) -> Database:
    name = f"cjt_{uuid.uuid4().hex[:12]}"
    statement = sql.SQL("create database {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" template {}").format(sql.Identifier(template))
    with connect(admin, autocommit=True) as conn:
        conn.execute(statement)
    return admin.with_dbname(name)


def _drop_database(admin: Database, database: Database) -> None:
    with connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(database.dbname)
            )
        )


def _health_issues(database: Database) -> dict[int, list[str]]:
    query = sql.SQL("select cj_batch_id, issues from {}").format(
        sql.Identifier(monitoring_schema(), "cj_batch_health")
    )
    with connect(database) as conn:
        return {batch: list(issues) for batch, issues in conn.execute(query)}


def _dbt_caught(database: Database, result: BuildResult) -> dict[int, set[str]]:
    """Batch -> the failing dbt tests whose stored failing rows carry its cj_batch_id."""
    caught: dict[int, set[str]] = {}
    with connect(database) as conn:
        for node in result.tests_failed:
            assert node.relation, f"{node.name} stored no failing rows"
            schema, table = (part.strip('"') for part in node.relation.split(".")[-2:])
            has_batch_column = conn.execute(
                "select 1 from information_schema.columns where table_schema = %s"
                " and table_name = %s and column_name = 'cj_batch_id'",
                (schema, table),
            ).fetchone()
            if not has_batch_column:
                continue
            rows = conn.execute(
                sql.SQL("select distinct cj_batch_id from {}").format(
                    sql.Identifier(schema, table)
                )
            )
            for (batch,) in rows:
                caught.setdefault(batch, set()).add(node.name)
    return caught


def _cj_health_check(database: Database) -> tuple[int, dict]:
    """`cj-health check --json` as an operator runs it: the installed command, its exit code."""
    command = Path(sys.executable).with_name("cj-health")
    env = {**os.environ, "CJ_DATABASE_URL": database.url, "GX_ANALYTICS_ENABLED": "false"}
    proc = subprocess.run(
        [str(command), "check", "--json"],
        env=env,
        cwd=project_dir(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode in (0, 1), f"cj-health check could not run: {proc.stderr.strip()}"
    return proc.returncode, json.loads(proc.stdout)


def _observe(database: Database) -> Layers:
    built = build(database)
    assert built.models_ok, built.summary()
    assert not built.tests_broken, built.summary()
    exit_code, summary = _cj_health_check(database)
    layers = Layers(
        issues=_health_issues(database),
        build=built,
        dbt_caught=_dbt_caught(database, built),
        check_exit=exit_code,
        check_summary=summary,
    )
    for rule in summary["rules"]:
        for batch in rule["failing_batches"]:
            layers.gx_caught.setdefault(batch, set()).add(rule["rule"])
    return layers


@dataclass
class Matrix:
    healthy_ids: list[int]
    faulty: dict[str, int]  # fault name -> its broken batch
    clean: Layers  # the healthy batches alone
    broken: Layers  # the same batches, some broken
    broken_database: Database


@pytest.fixture(scope="module")
def matrix(admin_db: Database, tmp_path_factory) -> Iterator[Matrix]:
    from cj_health.eng5.runner import execute_batch

    out = tmp_path_factory.mktemp("runs")
    clean = _create_database(admin_db)
    broken: Database | None = None
    try:
        init_schema(clean)
        ids = [
            execute_batch(clean, seed=seed, out_dir=out / str(seed)).cj_batch_id
            for seed in range(100, 100 + HEALTHY_BATCHES + len(FAULTS))
        ]
        healthy_ids, to_break = ids[:HEALTHY_BATCHES], ids[HEALTHY_BATCHES:]
        broken = _create_database(admin_db, template=clean.dbname)
        faulty = {}
        for (name, fault), batch in zip(FAULTS.items(), to_break, strict=True):
            other = healthy_ids[0] if fault.needs_other_batch else None
            break_batch(broken, name, batch, other)
            faulty[name] = batch
        # The two databases are observed side by side: dbt and cj-health run as subprocesses.
        with ThreadPoolExecutor(max_workers=2) as pool:
            clean_layers, broken_layers = pool.map(_observe, (clean, broken))
        yield Matrix(healthy_ids, faulty, clean_layers, broken_layers, broken)
    finally:
        _drop_database(admin_db, clean)
        if broken is not None:
            _drop_database(admin_db, broken)


def _mark(ok: bool) -> str:
    return "yes" if ok else "NO"


def _render(matrix: Matrix) -> str:
    layers = matrix.broken
    lines = [
        "detection matrix (fault x layer)",
        f"{'fault':<28} {'batch':>5}  {'code':<25} {'view':<4} {'dbt':<4} {'gx':<4}  caught by",
    ]
    for name, batch in matrix.faulty.items():
        code = FAULTS[name].code
        view = code in layers.issues.get(batch, [])
        dbt = bool(layers.dbt_caught.get(batch))
        gx = layers.check_exit == 1 and bool(layers.gx_caught.get(batch))
        caught = sorted(layers.dbt_caught.get(batch, set()) | layers.gx_caught.get(batch, set()))
        lines.append(
            f"{name:<28} {batch:>5}  {code:<25} {_mark(view):<4} {_mark(dbt):<4} {_mark(gx):<4}"
            f"  issues={layers.issues.get(batch)}; {', '.join(caught)}"
        )
    clean = matrix.clean
    lines.append(
        f"healthy data alone: view issues {sum(map(len, clean.issues.values()))}, "
        f"dbt failing tests {len(clean.build.tests_failed)}, cj-health check exit "
        f"{clean.check_exit}"
    )
    return "\n".join(lines)


def test_the_matrix_is_printed(matrix: Matrix, capsys) -> None:
    with capsys.disabled():
        print("\n" + _render(matrix))
    assert set(matrix.faulty) == set(FAULTS)


@pytest.mark.parametrize("name", list(FAULTS))
def test_the_view_flags_the_broken_batch_with_the_right_code(matrix: Matrix, name: str) -> None:
    batch, code = matrix.faulty[name], FAULTS[name].code
    issues = matrix.broken.issues
    assert code in issues[batch], f"{name}: batch {batch} shows {issues[batch]}, not {code}"
    flagged = {b for b, codes in issues.items() if code in codes}
    assert flagged <= set(matrix.faulty.values()), f"{code} flags healthy batches {flagged}"


def test_the_view_flags_no_healthy_batch_beside_the_faults(matrix: Matrix) -> None:
    for batch in matrix.healthy_ids:
        assert matrix.broken.issues[batch] == [], f"healthy batch {batch} flagged"


@pytest.mark.parametrize("name", list(FAULTS))
def test_the_dbt_tests_fail_on_the_broken_batch(matrix: Matrix, name: str) -> None:
    batch = matrix.faulty[name]
    assert matrix.broken.build.exit_code == 1
    assert matrix.broken.dbt_caught.get(batch), (
        f"{name}: no failing dbt test stored a row of batch {batch}"
    )


@pytest.mark.parametrize("name", list(FAULTS))
def test_cj_health_check_fails_on_the_broken_batch(matrix: Matrix, name: str) -> None:
    batch = matrix.faulty[name]
    assert matrix.broken.check_exit == 1
    assert matrix.broken.gx_caught.get(batch), f"{name}: no GX rule lists batch {batch}"


def test_no_layer_blames_a_healthy_batch(matrix: Matrix) -> None:
    for batch in matrix.healthy_ids:
        assert batch not in matrix.broken.dbt_caught, f"dbt blames healthy batch {batch}"
        assert batch not in matrix.broken.gx_caught, f"GX blames healthy batch {batch}"


def test_healthy_eng5_data_alone_keeps_all_three_green(matrix: Matrix) -> None:
    clean = matrix.clean
    assert all(codes == [] for codes in clean.issues.values()), clean.issues
    assert len(clean.issues) == HEALTHY_BATCHES + len(FAULTS)
    assert clean.build.exit_code == 0, clean.build.summary()
    assert clean.build.tests_failed == []
    assert clean.check_exit == 0, clean.check_summary
    assert clean.check_summary["success"] is True


@pytest.mark.parametrize("name", list(FAULTS))
def test_inspect_agrees_with_the_view_on_the_broken_batch(matrix: Matrix, name: str) -> None:
    from test_inspect import disagreements

    batch = matrix.faulty[name]
    assert disagreements(matrix.broken_database, batch) == [], name
