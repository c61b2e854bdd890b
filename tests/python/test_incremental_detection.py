"""The detection matrix in incremental mode: a fault that happens after the build is caught by
the every-minute `cj-health refresh`, not only by a full rebuild.

One database holds healthy ENG5 batches and, beside them, one batch for each fault of
cj_health.eng5.faults and three batches left unfinalized. It is built once (`dbt run`, `dbt
test`: all green) and refreshed once, so that the refresh's change tracking has started
(REFRESH_MODES: each way of telling which batches changed is one entry). Then, one at a
time, a fault breaks its batch and one `refresh` (not `--full`) follows. After that refresh:
- cj_batch_health shows the fault's problem code on its batch and the batch alerts; no other
  batch that has not been broken shows any issue;
- the stored facts were updated as cj_health.batch_facts promises: incrementally, with the
  broken batch among the recomputed ones, whether the fault inserted, updated or deleted rows
  (the rows it deleted are reported, as PostgreSQL counts them in the fault's own
  transaction);
- `refresh --full` then leaves cj_batch_health (all columns) and the stored facts equal, row
  for row, to what the incremental refresh gave: incremental equals full, every value
  exactly (the reliability's aggregates are exact, whatever order the plan reads rows in).

The catalogue's wedges (batch20_wedge, scoring_wedge, stalled) backdate last_activity_at
and updated_at by an hour or more, so a refresh that looked for changes by the service's
timestamps would miss them; they reach their state by rewinding a finished batch, which
deletes its projections and events. The same wedges as production leaves them, on a batch
the finalizer never finished (nothing to delete, only the state, the status and the
backdated activity written), are matrix cases of their own.

The matrix is printed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import psycopg
import pytest
from conftest import _create, _drop
from psycopg import sql
from psycopg.rows import dict_row
from refresh_support import FEED, FOUND_BY, NO_FEED, start

from cj_health.batch_facts import FACTS_TABLE, FactsUpdate, facts_columns
from cj_health.build import build, refresh
from cj_health.db import Database, connect, monitoring_schema, source_schema
from cj_health.eng5.faults import (
    FAULTS,
    SCORING_FOR,
    STALLED_FOR,
    WEDGED_FOR,
    apply_fault,
)
from cj_health.eng5.runner import execute_batch
from cj_health.schema import init_schema

HEALTHY_BATCHES = 3

Row = dict[str, object]


# --- refresh modes ------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshMode:
    """One way for the refresh to tell which batches changed. `start` runs once after the
    build, before any fault: what the mode needs so that the next refresh is incremental.
    `found_by`: what an incremental refresh says it found the changed batches by
    (FactsUpdate.found_by), so that a mode never passes on another mode's fallback."""

    name: str
    start: Callable[[Database], object]
    found_by: str


REFRESH_MODES = [
    # Without the change feed, the refresh compares the row fingerprints.
    RefreshMode("fingerprints", partial(start, mode=NO_FEED), found_by=FOUND_BY[NO_FEED]),
    # With it, its triggers name the changed batches, deleted rows included.
    RefreshMode("change_feed", partial(start, mode=FEED), found_by=FOUND_BY[FEED]),
]


# --- the faults ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Wedge:
    """A catalogue wedge as production leaves it, on a batch whose finalizer never ran: the
    state machine stops and the last activity lies `idle_for` back, as the catalogue
    backdates it; no projection or event was ever written, so nothing is deleted."""

    fault: str  # the catalogue fault whose problem code the batch must show
    state: str
    status: str
    idle_for: str
    partial_scoring: bool | None = None

    @property
    def name(self) -> str:
        return f"{self.fault}_unfinalized"

    def apply(self, conn: psycopg.Connection, cj_batch_id: int) -> None:
        conn.execute(
            "update cj_batch_states set state = %s::cj_batch_state_enum,"
            " last_activity_at = now() - %s::interval,"
            " partial_scoring_triggered = coalesce(%s, partial_scoring_triggered)"
            " where batch_id = %s",
            (self.state, self.idle_for, self.partial_scoring, cj_batch_id),
        )
        conn.execute(
            "update cj_batch_uploads set status = %s::cj_batch_status_enum,"
            " updated_at = now() - %s::interval where id = %s",
            (self.status, self.idle_for, cj_batch_id),
        )


WEDGES = (
    # The finalizer marked the upload COMPLETE_STABLE and never moved the state machine.
    Wedge("batch20_wedge", "WAITING_CALLBACKS", "COMPLETE_STABLE", WEDGED_FOR, True),
    # Finalization entered SCORING and hangs there.
    Wedge("scoring_wedge", "SCORING", "PERFORMING_COMPARISONS", SCORING_FOR),
    # Nothing has happened in WAITING_CALLBACKS for longer than stalled_after_minutes.
    Wedge("stalled", "WAITING_CALLBACKS", "PERFORMING_COMPARISONS", STALLED_FOR),
)
CASE_NAMES = [*FAULTS, *(wedge.name for wedge in WEDGES)]


@dataclass
class Case:
    """One fault, its batch, and what the refresh after it showed."""

    name: str
    code: str
    batch: int
    deleted: dict[str, int]  # rows the fault deleted, per service table
    facts: FactsUpdate  # what the refresh after the fault did to the stored facts
    batch_count: int  # batches in the database
    health: dict[int, Row]  # cj_batch_health after that refresh
    stored_facts: dict[int, Row]  # int_batch_facts_incremental after that refresh
    full_health: dict[int, Row]  # cj_batch_health after the full refresh that followed
    full_stored_facts: dict[int, Row]

    @property
    def health_differences(self) -> dict[int, list[str]]:
        return _differences(self.health, self.full_health)

    @property
    def facts_differences(self) -> dict[int, list[str]]:
        return _differences(self.stored_facts, self.full_stored_facts)

    @property
    def caught(self) -> bool:
        row = self.health[self.batch]
        return self.code in row["issues"] and row["is_alerting"] is True


@dataclass
class Matrix:
    mode: RefreshMode
    healthy_ids: list[int]
    unbroken_issues: dict[int, list[str]]  # every batch after the start, before any fault
    cases: dict[str, Case]


# --- observing ----------------------------------------------------------------------------


def _health(database: Database) -> dict[int, Row]:
    with connect(database) as conn, conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            sql.SQL("select * from {} order by cj_batch_id").format(
                sql.Identifier(monitoring_schema(), "cj_batch_health")
            )
        ).fetchall()
    return {row["cj_batch_id"]: row for row in rows}


def _stored_facts(database: Database) -> dict[int, Row]:
    with connect(database) as conn, conn.cursor(row_factory=dict_row) as cursor:
        columns = sql.SQL(", ").join(map(sql.Identifier, facts_columns(conn)))
        rows = cursor.execute(
            sql.SQL("select {} from {}").format(
                columns, sql.Identifier(monitoring_schema(), FACTS_TABLE)
            )
        ).fetchall()
    return {row["cj_batch_id"]: row for row in rows}


def _differences(rows: dict[int, Row], others: dict[int, Row]) -> dict[int, list[str]]:
    """Batch -> the columns whose values differ (or "row" when one side lacks the batch)."""
    differences = {}
    for batch in sorted(rows.keys() | others.keys()):
        row, other = rows.get(batch), others.get(batch)
        if row is None or other is None:
            differences[batch] = ["row"]
            continue
        columns = sorted(
            name
            for name in row.keys() | other.keys()
            if row.get(name) != other.get(name)
        )
        if columns:
            differences[batch] = columns
    return differences


def _inject(database: Database, apply: Callable[[psycopg.Connection], None]) -> dict[str, int]:
    """Apply one fault in its own transaction, as break_batch does; return the rows it
    deleted per service table, as PostgreSQL counts them in that transaction (reported in
    the matrix; the refresh does not read them)."""
    with connect(database) as conn:
        apply(conn)
        deleted = conn.execute(
            "select relname, n_tup_del from pg_catalog.pg_stat_xact_user_tables"
            " where schemaname = %s and n_tup_del > 0 order by relname",
            (source_schema(),),
        ).fetchall()
        conn.commit()
    return {table: int(count) for table, count in deleted}


def _break_and_refresh(
    database: Database,
    name: str,
    code: str,
    batch: int,
    apply: Callable[[psycopg.Connection], None],
) -> Case:
    deleted = _inject(database, apply)
    facts = refresh(database).facts
    health, stored = _health(database), _stored_facts(database)
    full = refresh(database, full=True).facts
    assert full.mode == "full", full.summary()
    return Case(
        name=name,
        code=code,
        batch=batch,
        deleted=deleted,
        facts=facts,
        batch_count=len(health),
        health=health,
        stored_facts=stored,
        full_health=_health(database),
        full_stored_facts=_stored_facts(database),
    )


@pytest.fixture(scope="module", params=REFRESH_MODES, ids=[mode.name for mode in REFRESH_MODES])
def matrix(
    request: pytest.FixtureRequest, admin_db: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Matrix]:
    mode: RefreshMode = request.param
    out = tmp_path_factory.mktemp("runs")
    database = _create(admin_db)
    try:
        yield _run_matrix(database, mode, out)
    finally:
        _drop(admin_db, database.dbname)


def _run_matrix(database: Database, mode: RefreshMode, out: Path) -> Matrix:
    init_schema(database)
    seeds = iter(range(200, 200 + HEALTHY_BATCHES + len(FAULTS) + len(WEDGES)))

    def new_batch(*, finalize: bool = True) -> int:
        seed = next(seeds)
        return execute_batch(
            database, seed=seed, out_dir=out / str(seed), finalize=finalize
        ).cj_batch_id

    healthy_ids = [new_batch() for _ in range(HEALTHY_BATCHES)]
    fault_batches = {name: new_batch() for name in FAULTS}
    wedge_batches = {wedge.name: new_batch(finalize=False) for wedge in WEDGES}

    built = build(database)
    assert built.exit_code == 0, built.summary()
    mode.start(database)
    unbroken = {batch: list(row["issues"]) for batch, row in _health(database).items()}

    cases: dict[str, Case] = {}
    for name, fault in FAULTS.items():
        batch = fault_batches[name]
        other = healthy_ids[0] if fault.needs_other_batch else None
        apply = partial(apply_fault, name=name, cj_batch_id=batch, other_batch_id=other)
        cases[name] = _break_and_refresh(database, name, fault.code, batch, apply)
    for wedge in WEDGES:
        batch = wedge_batches[wedge.name]
        apply = partial(wedge.apply, cj_batch_id=batch)
        cases[wedge.name] = _break_and_refresh(
            database, wedge.name, FAULTS[wedge.fault].code, batch, apply
        )
    return Matrix(mode, healthy_ids, unbroken, cases)


# --- the matrix ---------------------------------------------------------------------------


def _mark(ok: bool) -> str:
    return "yes" if ok else "NO"


def _render(matrix: Matrix) -> str:
    lines = [
        f"incremental detection matrix (refresh mode {matrix.mode.name}; one refresh per fault)",
        f"{'fault':<32} {'batch':>5}  {'code':<25} {'caught':<6} {'facts':<11} "
        f"{'recomputed':<10} {'=full':<5}  why / issues",
    ]
    for case in matrix.cases.values():
        facts = case.facts
        recomputed = facts.mode == "full" or case.batch in facts.batch_ids
        equal = not case.health_differences and not case.facts_differences
        deleted = ", ".join(f"{table} -{count}" for table, count in case.deleted.items())
        how = facts.reason or f"found by {facts.found_by}"
        why = "; ".join(part for part in (how, deleted and f"deleted {deleted}") if part)
        lines.append(
            f"{case.name:<32} {case.batch:>5}  {case.code:<25} {_mark(case.caught):<6} "
            f"{facts.mode:<11} {_mark(recomputed):<10} {_mark(equal):<5}  "
            f"{why + '; ' if why else ''}issues={case.health[case.batch]['issues']}"
            + (
                f"; differs from full: view {case.health_differences},"
                f" facts {case.facts_differences}"
                if not equal
                else ""
            )
        )
    return "\n".join(lines)


def test_the_matrix_is_printed(matrix: Matrix, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + _render(matrix))
    assert set(matrix.cases) == set(CASE_NAMES)


def test_no_batch_shows_an_issue_before_the_faults(matrix: Matrix) -> None:
    flagged = {batch: issues for batch, issues in matrix.unbroken_issues.items() if issues}
    assert flagged == {}
    assert len(matrix.unbroken_issues) == HEALTHY_BATCHES + len(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_the_refresh_after_the_fault_flags_its_batch_and_alerts(matrix: Matrix, name: str) -> None:
    case = matrix.cases[name]
    row = case.health[case.batch]
    assert case.code in row["issues"], (
        f"{name}: after a {case.facts.summary()}, batch {case.batch} shows {row['issues']},"
        f" not {case.code}"
    )
    assert row["is_alerting"] is True, f"{name}: batch {case.batch} is not alerting"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_no_batch_left_unbroken_shows_any_issue(matrix: Matrix, name: str) -> None:
    """After each fault's refresh, every batch no fault has broken yet (the healthy ones and
    the ones whose fault comes later) shows no issue and does not alert."""
    broken: set[int] = set()
    for case in matrix.cases.values():
        broken.add(case.batch)
        if case.name == name:
            break
    flagged = {
        batch: row["issues"]
        for batch, row in matrix.cases[name].health.items()
        if batch not in broken and (row["issues"] or row["is_alerting"])
    }
    assert flagged == {}, f"after {name}: unbroken batches flagged {flagged}"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_the_facts_update_is_incremental(matrix: Matrix, name: str) -> None:
    case = matrix.cases[name]
    assert (case.facts.mode, case.facts.found_by) == ("incremental", matrix.mode.found_by), (
        f"{name} deleted {case.deleted or 'nothing'}: {case.facts.summary()}"
    )


@pytest.mark.parametrize("name", CASE_NAMES)
def test_the_refresh_recomputed_the_broken_batch(matrix: Matrix, name: str) -> None:
    case = matrix.cases[name]
    if case.facts.mode == "full":
        assert case.facts.recomputed == case.batch_count, case.facts.summary()
    else:
        assert case.batch in case.facts.batch_ids, (
            f"{name}: batch {case.batch} not among the recomputed {case.facts.batch_ids}"
        )


@pytest.mark.parametrize("name", CASE_NAMES)
def test_a_full_refresh_after_the_incremental_one_changes_nothing(
    matrix: Matrix, name: str
) -> None:
    case = matrix.cases[name]
    assert case.health_differences == {}, (
        f"{name}: cj_batch_health after the incremental refresh differs from the full"
        f" rebuild (batch -> columns)"
    )
    assert case.facts_differences == {}, (
        f"{name}: the stored facts after the incremental refresh differ from the full"
        f" rebuild (batch -> columns)"
    )
