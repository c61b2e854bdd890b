"""The fault catalogue and `replay-incident` on real PostgreSQL: each fault breaks exactly the
batch it is given, exactly the way its description says, and nothing else.

Whether the monitoring (cj_batch_health, dbt tests, `cj-health check`) catches each fault is
the detection matrix's job (test_detection_matrix.py); this file checks the raw rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import eng5_template
from psycopg import sql

from cj_health import cli
from cj_health.db import Database, connect
from cj_health.eng5.faults import FAULTS, apply_fault, break_batch, get_fault
from cj_health.eng5.replay import (
    INCIDENT_BOS_BATCH_ID,
    replay_batch20,
    replay_incident,
)
from cj_health.errors import BatchNotFound, CjHealthError

FACTS_SQL = """
select
    u.status::text as status,
    s.state::text as state,
    u.completed_at,
    s.partial_scoring_triggered as partial_scoring,
    extract(epoch from now() - s.last_activity_at) / 60 as idle_minutes,
    s.submitted_comparisons as submitted,
    s.completed_comparisons as completed,
    s.failed_comparisons as failed,
    u.expected_essay_count as expected_essays,
    u.bos_batch_id,
    (select count(*) from cj_comparison_pairs c where c.cj_batch_id = u.id) as pairs,
    (select count(*) from cj_comparison_pairs c
      where c.cj_batch_id = u.id and c.winner in ('essay_a', 'essay_b')) as pairs_completed,
    (select count(*) from cj_comparison_pairs c
      where c.cj_batch_id = u.id and c.winner is null) as pairs_pending,
    (select count(*) from cj_processed_essays e where e.cj_batch_id = u.id) as essays,
    (select count(*) from cj_processed_essays e
      where e.cj_batch_id = u.id and e.is_anchor) as anchors_by_column,
    (select count(*) from cj_processed_essays e
      where e.cj_batch_id = u.id and e.processing_metadata ->> 'is_anchor' = 'true')
      as anchors_by_metadata,
    (select count(*) from grade_projections p where p.cj_batch_id = u.id) as projections,
    (select count(*) from grade_projections p join cj_processed_essays e
       on e.els_essay_id = p.els_essay_id
      where p.cj_batch_id = u.id and e.is_anchor) as anchor_projections,
    (select count(*) from grade_projections p join cj_processed_essays e
       on e.els_essay_id = p.els_essay_id
      where p.cj_batch_id = u.id and e.cj_batch_id <> p.cj_batch_id) as misfiled_projections,
    (select count(*) from event_outbox o
      where (o.aggregate_type = 'cj_batch' and o.aggregate_id = u.bos_batch_id)
         or (o.aggregate_type = 'assessment_result' and o.aggregate_id = u.id::text)) as events,
    (select count(*) from event_outbox o
      where o.aggregate_type = 'assessment_result' and o.aggregate_id = u.id::text
        and o.published_at is null and o.retry_count >= 5) as abandoned_events,
    (select (var_samp(e.current_bt_score) - avg(e.current_bt_se ^ 2)) / var_samp(e.current_bt_score)
       from cj_processed_essays e
      where e.cj_batch_id = u.id and not e.is_anchor and e.current_bt_score is not null)
      as reliability
from cj_batch_uploads u join cj_batch_states s on s.batch_id = u.id
where u.id = %s
"""

# What each fault must leave behind, read from the raw tables.
EXPECTED: dict[str, Callable[[dict], bool]] = {
    "batch20_wedge": lambda f: f["status"] == "COMPLETE_STABLE"
    and f["state"] == "WAITING_CALLBACKS"
    and f["projections"] == 0
    and f["events"] == 0
    and f["completed_at"] is None
    and f["partial_scoring"]
    and 5 < f["idle_minutes"] < 240,
    "scoring_wedge": lambda f: f["state"] == "SCORING"
    and f["status"] == "PERFORMING_COMPARISONS"
    and f["projections"] == 0
    and f["events"] == 0
    and 30 < f["idle_minutes"] < 240,
    "anchor_flags_lost": lambda f: f["anchors_by_column"] == 0 and f["anchors_by_metadata"] == 12,
    "anchor_projected": lambda f: f["anchor_projections"] == 1 and f["projections"] == 13,
    "misattributed_projection": lambda f: f["misfiled_projections"] == 1
    and f["projections"] == 13,
    "completed_without_timestamp": lambda f: f["state"] == "COMPLETED"
    and f["status"] == "COMPLETE_STABLE"
    and f["completed_at"] is None,
    "counter_mismatch": lambda f: f["completed"] == f["pairs_completed"] + 2,
    "event_missing": lambda f: f["events"] == 1,
    "event_unpublished": lambda f: f["abandoned_events"] == 1 and f["events"] == 2,
    "low_reliability": lambda f: f["reliability"] is not None and f["reliability"] < 0.7,
    "stalled": lambda f: f["state"] == "WAITING_CALLBACKS"
    and f["status"] == "PERFORMING_COMPARISONS"
    and f["pairs_pending"] == 3
    and f["completed"] == f["pairs_completed"]
    and f["submitted"] == f["pairs"]
    and f["idle_minutes"] > 240,
}


def facts(database: Database, cj_batch_id: int) -> dict:
    with connect(database) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(FACTS_SQL, (cj_batch_id,)).fetchone()
    assert row is not None, f"batch {cj_batch_id} missing"
    return dict(row)


def snapshot(database: Database, cj_batch_id: int) -> list:
    """Every row of one batch in every CJ table, to show a fault left it untouched."""
    tables = {
        "cj_batch_uploads": "id",
        "cj_batch_states": "batch_id",
        "cj_processed_essays": "cj_batch_id",
        "cj_comparison_pairs": "cj_batch_id",
        "grade_projections": "cj_batch_id",
    }
    rows = []
    with connect(database) as conn:
        for table, key in tables.items():
            query = sql.SQL("select t::text from {} t where {} = %s order by 1").format(
                sql.Identifier(table), sql.Identifier(key)
            )
            rows.append(conn.execute(query, (cj_batch_id,)).fetchall())
        rows.append(
            conn.execute(
                "select o::text from event_outbox o join cj_batch_uploads u on u.id = %s"
                " where o.aggregate_id in (u.bos_batch_id, u.id::text) order by 1",
                (cj_batch_id,),
            ).fetchall()
        )
    return rows


@pytest.fixture(scope="module")
def healthy_template(admin_db: Database, tmp_path_factory) -> Iterator[tuple[str, list[int]]]:
    """A database holding two healthy ENG5 batches, cloned for each test."""
    with eng5_template(admin_db, (1, 2), tmp_path_factory.mktemp("runs")) as template:
        yield template


@pytest.fixture
def healthy(make_database, healthy_template) -> tuple[Database, list[int]]:
    name, ids = healthy_template
    return make_database(template=name), ids


def test_the_catalogue_covers_every_known_failure_class() -> None:
    assert set(FAULTS) == set(EXPECTED)
    for name, fault in FAULTS.items():
        assert fault.name == name
        assert fault.code and fault.code == fault.code.upper()
        assert len(fault.description) > 30, f"{name} needs a description in plain words"


def test_healthy_batches_show_none_of_the_faults(healthy) -> None:
    database, ids = healthy
    for cj_batch_id in ids:
        before = facts(database, cj_batch_id)
        broken = [name for name, check in EXPECTED.items() if check(before)]
        assert broken == [], f"healthy batch {cj_batch_id} already looks broken: {broken}"


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_fault_breaks_its_batch_as_described_and_nothing_else(healthy, name) -> None:
    database, (target, other) = healthy
    other_before = snapshot(database, other)
    if not FAULTS[name].needs_other_batch:
        break_batch(database, name, target)
    else:
        break_batch(database, name, target, other)
    assert EXPECTED[name](facts(database, target)), facts(database, target)
    assert snapshot(database, other) == other_before, f"{name} touched batch {other}"


def test_a_fault_needs_a_batch_that_exists(healthy) -> None:
    database, _ = healthy
    with pytest.raises(BatchNotFound, match="999999"):
        break_batch(database, "counter_mismatch", 999999)


def test_a_fault_refuses_a_batch_that_is_not_completed_and_changes_nothing(healthy) -> None:
    database, (target, _) = healthy
    break_batch(database, "stalled", target)
    before = snapshot(database, target)
    with pytest.raises(CjHealthError, match="WAITING_CALLBACKS"):
        break_batch(database, "anchor_flags_lost", target)
    assert snapshot(database, target) == before


def test_a_fault_that_finds_nothing_to_break_says_so_and_rolls_back(healthy) -> None:
    database, (target, _) = healthy
    with connect(database) as conn:
        conn.execute("update cj_processed_essays set is_anchor = false where cj_batch_id = %s",
                     (target,))
    before = snapshot(database, target)
    with pytest.raises(CjHealthError, match="no anchor essays"):
        break_batch(database, "anchor_flags_lost", target)
    assert snapshot(database, target) == before


def test_misattributed_projection_needs_a_second_batch(healthy) -> None:
    database, (target, _) = healthy
    with connect(database) as conn:
        with pytest.raises(CjHealthError, match="second batch"):
            apply_fault(conn, "misattributed_projection", target)
        with pytest.raises(CjHealthError, match="different batch"):
            apply_fault(conn, "misattributed_projection", target, target)


def test_an_unknown_fault_names_the_known_ones() -> None:
    with pytest.raises(CjHealthError, match="batch20_wedge"):
        get_fault("no_such_fault")


def test_replay_batch20_has_the_incidents_counts(cj_db: Database) -> None:
    result = replay_batch20(cj_db)
    got = facts(cj_db, result.cj_batch_id)
    assert result.bos_batch_id == INCIDENT_BOS_BATCH_ID == got["bos_batch_id"]
    assert (got["status"], got["state"]) == ("COMPLETE_STABLE", "WAITING_CALLBACKS")
    assert got["expected_essays"] == 6
    assert (got["submitted"], got["completed"], got["failed"]) == (5, 5, 0)
    assert got["pairs"] == got["pairs_completed"] == 5
    assert got["partial_scoring"] and got["completed_at"] is None
    assert got["projections"] == 0 and got["events"] == 0
    assert got["essays"] == 18
    assert got["anchors_by_metadata"] == 15 and got["anchors_by_column"] == 0
    assert got["idle_minutes"] > 5
    assert "STUCK_FINALIZATION" in result.codes


def test_a_second_replay_takes_a_fresh_bos_batch_id(cj_db: Database) -> None:
    first = replay_batch20(cj_db)
    second = replay_batch20(cj_db)
    assert first.bos_batch_id == INCIDENT_BOS_BATCH_ID
    assert second.bos_batch_id != INCIDENT_BOS_BATCH_ID
    uuid.UUID(second.bos_batch_id)
    assert second.cj_batch_id != first.cj_batch_id


def test_replay_of_a_catalogued_fault_adds_a_broken_batch(
    cj_db: Database, tmp_path: Path
) -> None:
    result = replay_incident(cj_db, "misattributed_projection", seed=3, out_dir=tmp_path)
    assert result.codes == ("MISATTRIBUTED_PROJECTION",)
    assert result.other_batch_id is not None
    assert EXPECTED["misattributed_projection"](facts(cj_db, result.cj_batch_id))


def test_cli_replay_incident_defaults_to_batch20(cj_env: Database, capsys) -> None:
    assert cli.main(["eng5", "replay-incident"]) == 0
    out = capsys.readouterr().out
    assert "batch20_wedge" in out and "STUCK_FINALIZATION" in out
    with connect(cj_env) as conn:
        assert conn.execute("select count(*) from cj_batch_uploads").fetchone()[0] == 1


def test_cli_replay_incident_rejects_an_unknown_fault(cj_env: Database, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eng5", "replay-incident", "nonsense"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    with connect(cj_env) as conn:
        assert conn.execute("select count(*) from cj_batch_uploads").fetchone()[0] == 0
