"""Build the monitoring views with dbt, and refresh cj_batch_health fast without dbt.

`build(database)` runs two dbt commands, not `dbt build`:

1. `dbt build --exclude-resource-type test --exclude-resource-type unit_test`: the seed and
   every model (views, and the materialized view cj_batch_health, refreshed concurrently or
   rebuilt when its definition changed);
2. `dbt test`: the unit tests, the invariants and the column tests, failing rows stored in
   `<schema>_dbt_test__audit`.

`dbt build` would skip every model downstream of a failing test, so the health view would go
stale exactly when the data is broken. Here the views are always brought up to date first,
and the tests then report what is wrong.

`refresh(database)` brings the stored per-batch facts up to date for the batches whose rows
changed (cj_health.batch_facts; `full=True` rebuilds every batch), then runs `REFRESH
MATERIALIZED VIEW CONCURRENTLY` on cj_batch_health and on cj_batch_health_refresh (its one-row
refresh time), all in one REPEATABLE READ transaction with psycopg (no dbt start-up), or a
plain refresh when
a view was never populated, with the session settings of dbt var `cj_refresh_settings` (JIT
off, more work_mem) for that transaction only, as the last dbt run resolved it
(cj_health.settings).

After each refresh (refresh's own, and dbt's in `build`), cj_health.history records a point
in cj_health_history and brings cj_batch_incidents up to date.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from cj_health.batch_facts import FactsUpdate, begin_refresh, update_batch_facts
from cj_health.db import Database, connect, monitoring_schema
from cj_health.db_errors import privilege_line, refresh_failure
from cj_health.dbt_runner import DbtResult, dbt_work_dir, run_dbt
from cj_health.errors import EXIT_OK, EXIT_PROBLEMS_FOUND, EXIT_USAGE, CjHealthError
from cj_health.history import record_refresh
from cj_health.monitoring_tables import HEALTH_VIEW, REFRESH_VIEW
from cj_health.settings import refresh_settings

BUILD_ARGS = ["build", "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test"]


@dataclass(frozen=True)
class NodeResult:
    """One node of a dbt run_results.json: its name, kind, status and failing row count."""

    name: str
    resource_type: str
    status: str
    failures: int
    message: str
    relation: str | None = None

    @property
    def is_unit_test(self) -> bool:
        return self.resource_type == "unit_test"


@dataclass
class BuildResult:
    """What `build` did: the models step, the tests step, and the verdict."""

    run: DbtResult
    test: DbtResult | None
    models: list[NodeResult] = field(default_factory=list)
    tests: list[NodeResult] = field(default_factory=list)

    @property
    def models_failed(self) -> list[NodeResult]:
        return [node for node in self.models if node.status not in ("success", "pass")]

    @property
    def models_ok(self) -> bool:
        return self.run.ok and not self.models_failed

    @property
    def tests_failed(self) -> list[NodeResult]:
        """Data tests that found failing rows: invariant violations in the data."""
        return [node for node in self.tests if node.status == "fail" and not node.is_unit_test]

    @property
    def tests_broken(self) -> list[NodeResult]:
        """Tests dbt could not run, and failing unit tests (the model logic is wrong)."""
        return [
            node
            for node in self.tests
            if node.status in ("error", "runtime error")
            or (node.is_unit_test and node.status == "fail")
        ]

    @property
    def tests_passed(self) -> int:
        return sum(1 for node in self.tests if node.status == "pass")

    def privilege_error(self, role: str | None, where: str) -> str | None:
        """The one line for a failure caused by a missing privilege (dbt quotes PostgreSQL's
        words in its output), else None."""
        if self.exit_code != EXIT_USAGE:
            return None
        outputs = [self.run.output, self.test.output if self.test else ""]
        messages = [node.message for node in (*self.models_failed, *self.tests_broken)]
        for text in (*messages, *outputs):
            line = privilege_line(text, role, where=where)
            if line:
                return line
        return None

    @property
    def exit_code(self) -> int:
        """0 all good, 1 data tests failed (the data breaks an invariant), 2 dbt, a model or
        a unit test failed."""
        if not self.models_ok or self.test is None or self.tests_broken:
            return EXIT_USAGE
        if self.tests_failed:
            return EXIT_PROBLEMS_FOUND
        if not self.test.ok:
            return EXIT_USAGE
        return EXIT_OK

    def summary(self) -> str:
        lines = []
        if self.models:
            kinds = sorted({node.resource_type for node in self.models})
            ok_count = len(self.models) - len(self.models_failed)
            lines.append(f"models: {ok_count} of {len(self.models)} built ({', '.join(kinds)})")
        else:
            lines.append("models: none built")
        for node in self.models_failed:
            lines.append(f"  {node.status.upper()} {node.name}: {node.message}")
        if not self.run.ok and not self.models_failed:
            lines.append(f"  dbt failed: {dbt_error(self.run.output)}")
        if self.test is None:
            lines.append("tests: not run (the models did not build)")
            return "\n".join(lines)
        lines.append(
            f"tests: {self.tests_passed} passed, {len(self.tests_failed)} failed,"
            f" {len(self.tests_broken)} broken"
        )
        for node in self.tests_failed:
            where = f" (rows stored in {node.relation})" if node.relation else ""
            lines.append(f"  FAIL {node.name}: {node.failures} failing rows{where}")
        for node in self.tests_broken:
            lines.append(f"  {node.status.upper()} {node.name}: {node.message}")
        if not self.test.ok and not self.tests and not self.tests_broken:
            lines.append(f"  dbt failed: {dbt_error(self.test.output)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class RefreshResult:
    view: str
    concurrently: bool
    seconds: float
    batches: int
    alerting: int
    facts: FactsUpdate

    def summary(self) -> str:
        how = "concurrently" if self.concurrently else "plainly (first population)"
        return (
            f"refreshed {self.view} {how} in {self.seconds:.2f}s: {self.batches} batches,"
            f" {self.alerting} alerting\n{self.facts.summary()}"
        )


def build(
    database: Database,
    *,
    dbt_vars: dict[str, object] | None = None,
    echo: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BuildResult:
    """Bring every model up to date, then run every test; see the module docstring. With
    `echo`, dbt's own log is shown and its target folder (the compiled SQL it names) is kept
    (cj_health.dbt_runner.kept_work_dir); `progress` gets one line per finished node."""
    _check_reachable(database)
    # A target path of our own: run_results.json and the partial-parse state are never shared
    # with another dbt run in the same project directory.
    with dbt_work_dir(keep=echo) as target:
        paths = ["--target-path", target, "--log-path", target]
        run = run_dbt(
            database, [*BUILD_ARGS, *paths], dbt_vars=dbt_vars, echo=echo, progress=progress
        )
        result = BuildResult(run=run, test=None, models=_node_results(target, "run"))
        if not result.models_ok:
            return result
        record_refresh(database)  # dbt refreshed cj_batch_health: history and incidents
        result.test = run_dbt(
            database, ["test", *paths], dbt_vars=dbt_vars, echo=echo, progress=progress
        )
        result.tests = _node_results(target, "test")
    return result


def refresh(database: Database, *, full: bool = False) -> RefreshResult:
    """Refresh cj_batch_health; concurrently (readers never wait) once it has been populated.
    The stored facts are recomputed for the batches whose rows changed, or for every batch
    when `full` (the periodic full rebuild) or when changes cannot be told apart."""
    schema = monitoring_schema()
    view = sql.Identifier(schema, HEALTH_VIEW)
    with connect(database, autocommit=True) as conn:
        concurrently = _is_populated(conn, schema, HEALTH_VIEW)
        if concurrently is None:
            raise CjHealthError(
                f"{schema}.{HEALTH_VIEW} does not exist in {database.display};"
                " run `cj-health build` first"
            )
        started = time.perf_counter()
        try:
            facts = refresh_in_transaction(conn, full=full)
        except psycopg.Error as exc:  # rolled back; the hint follows the cause
            raise refresh_failure(exc, conn, f"{schema}.{HEALTH_VIEW}") from None
        seconds = time.perf_counter() - started
        batches, alerting = conn.execute(
            sql.SQL("select count(*), count(*) filter (where is_alerting) from {}").format(view)
        ).fetchone()
    record_refresh(database)
    return RefreshResult(
        f"{schema}.{HEALTH_VIEW}", concurrently, seconds, batches, alerting, facts
    )


def refresh_in_transaction(conn: psycopg.Connection, *, full: bool = False) -> FactsUpdate:
    """The refresh itself, in one REPEATABLE READ transaction on `conn` (autocommit): the
    facts' lock (before the snapshot), the session settings, the stored facts, then both
    materialized views. One transaction, one snapshot, one now():
    cj_batch_health_refresh.refreshed_at is the moment the verdicts were judged at."""
    schema = monitoring_schema()
    with conn.transaction():
        begin_refresh(conn)
        for name, value in refresh_settings(conn).items():
            conn.execute("select set_config(%s, %s, true)", (name, value))
        facts = update_batch_facts(conn, full=full)
        for relation in (HEALTH_VIEW, REFRESH_VIEW):
            conn.execute(_refresh_statement(conn, schema, relation))
    return facts


def _is_populated(conn: psycopg.Connection, schema: str, relation: str) -> bool | None:
    """Whether the materialized view `relation` has been populated; None: no such view."""
    row = conn.execute(
        "select ispopulated from pg_catalog.pg_matviews"
        " where schemaname = %s and matviewname = %s",
        (schema, relation),
    ).fetchone()
    return None if row is None else bool(row[0])


def _refresh_statement(conn: psycopg.Connection, schema: str, relation: str) -> sql.Composed:
    """REFRESH ... CONCURRENTLY once `relation` has been populated, plainly before."""
    populated = _is_populated(conn, schema, relation)
    if populated is None:
        raise CjHealthError(f"{schema}.{relation} does not exist; run `cj-health build`")
    return sql.SQL("refresh materialized view {}{}").format(
        sql.SQL("concurrently ") if populated else sql.SQL(""), sql.Identifier(schema, relation)
    )


def _check_reachable(database: Database) -> None:
    """Fail with one line before dbt starts when the database cannot be reached."""
    with connect(database) as conn:
        conn.execute("select 1")


def _node_results(target: str, step: str) -> list[NodeResult]:
    path = Path(target) / "run_results.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    nodes = []
    for entry in data.get("results", []):
        unique_id = entry.get("unique_id", "")
        resource_type = unique_id.split(".", 1)[0]
        if step == "run" and resource_type not in ("model", "seed", "snapshot"):
            continue
        if step == "test" and resource_type not in ("test", "unit_test"):
            continue
        nodes.append(
            NodeResult(
                name=unique_id.split(".")[-1] if resource_type != "test" else _test_name(entry),
                resource_type=resource_type,
                status=str(entry.get("status", "")),
                failures=int(entry.get("failures") or 0),
                message=_first_line(entry.get("message")),
                relation=entry.get("relation_name"),
            )
        )
    return nodes


def _test_name(entry: dict) -> str:
    # unique ids of generic tests end in a hash: test.project.<name>.<hash>
    parts = entry.get("unique_id", "").split(".")
    return parts[2] if len(parts) > 2 else parts[-1]


def _first_line(message: object) -> str:
    text = str(message or "").strip()
    return text.splitlines()[0] if text else ""


def dbt_error(output: str) -> str:
    """dbt's reason for giving up, in one line: the two lines after "Encountered an error:"
    (kind and place, then the message), else the last line that mentions an error."""
    lines = [_strip_log_prefix(line) for line in output.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("Encountered an error"):
            return ": ".join(lines[index + 1 : index + 3]) or line
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output (rerun with --verbose)"])[-1]


def _strip_log_prefix(line: str) -> str:
    # dbt prefixes its log lines with a colour code and a time: "\x1b[0m05:07:58  text"
    text = line.strip()
    if text.startswith("\x1b["):
        text = text.split("m", 1)[-1]
    head, _, rest = text.partition("  ")
    if rest and head.count(":") == 2 and head.replace(":", "").isdigit():
        text = rest
    return text.strip()
