"""The monitoring on a production-shaped database (production_shapes): every shape gets its
verdict (healthy, in progress and failed shapes never alert, broken ones alert with exactly
their codes) in the health view, the alerts, the dbt tests and `cj-health check`; the data set
covers every status and state label and its outbox rows pass the consumers' contracts; and
acknowledgements work end to end through the CLI.

One database for the module: production's schema at head with one batch per shape, the
monitoring built over it once; the acknowledgement test then changes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from contracts import (
    COMPLETED_TOPIC,
    FAILED_TOPIC,
    MONITOR_FAILED_EVENT_TYPE,
    RESOURCE_TOPIC,
    RESULT_TOPIC,
    ContractViolation,
    validate_outbox,
    validate_outbox_row,
)
from production_shapes import SHAPES, load_production_shapes
from psycopg import sql

from cj_health.build import BuildResult, build
from cj_health.check import run_check
from cj_health.cli import main
from cj_health.db import Database, connect, monitoring_schema


@dataclass
class Shaped:
    database: Database
    ids: dict[str, int]
    build: BuildResult


@pytest.fixture(scope="module")
def shaped(admin_db: Database) -> Iterator[Shaped]:
    from conftest import _create, _drop

    database = _create(admin_db)
    try:
        ids = load_production_shapes(database)
        result = build(database)
        assert result.models_ok, result.summary()
        yield Shaped(database, ids, result)
    finally:
        _drop(admin_db, database.dbname)


def _health(database: Database) -> dict[int, tuple[list[str], list[str], bool, str]]:
    with connect(database) as conn:
        rows = conn.execute(
            sql.SQL(
                "select cj_batch_id, issues, acknowledged_issues, is_alerting, health_status"
                " from {}.{}"
            ).format(sql.Identifier(monitoring_schema()), sql.Identifier("cj_batch_health"))
        ).fetchall()
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


def _alerts(database: Database) -> set[tuple[int, str]]:
    with connect(database) as conn:
        rows = conn.execute(
            sql.SQL("select cj_batch_id, issue from {}.{}").format(
                sql.Identifier(monitoring_schema()), sql.Identifier("cj_batch_alerts")
            )
        ).fetchall()
    return {(row[0], row[1]) for row in rows}


def _broken(shaped: Shaped) -> set[int]:
    return {shaped.ids[shape.name] for shape in SHAPES if shape.issues}


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.name for shape in SHAPES])
def test_each_production_shape_gets_its_verdict(shaped, shape):
    batch = shaped.ids[shape.name]
    issues, acknowledged, alerting, status = _health(shaped.database)[batch]
    assert acknowledged == []
    assert (status, issues) == (shape.verdict, list(shape.issues)), (
        f"{shape.name} ({shape.reason}) must be {shape.verdict} {list(shape.issues)}"
    )
    assert alerting == bool(shape.issues)
    alerts = {issue for alerted, issue in _alerts(shaped.database) if alerted == batch}
    assert alerts == set(shape.issues)


def test_every_status_and_state_label_is_in_the_data_set(shaped):
    """Read from the database's own enums: a label production adds fails here until a shape
    shows what the monitoring says about it."""
    with connect(shaped.database) as conn:
        for enum, column, table in (
            ("cj_batch_status_enum", "status", "cj_batch_uploads"),
            ("cj_batch_state_enum", "state", "cj_batch_states"),
        ):
            labels = conn.execute(
                sql.SQL("select unnest(enum_range(null::{}))::text").format(
                    sql.Identifier(enum)
                )
            ).fetchall()
            used = conn.execute(
                sql.SQL("select distinct {}::text from {}").format(
                    sql.Identifier(column), sql.Identifier(table)
                )
            ).fetchall()
            missing = {label for (label,) in labels} - {label for (label,) in used}
            assert len(labels) >= 7 and not missing, f"{enum} labels without a shape: {missing}"


def test_every_outbox_row_is_a_contract_valid_event(shaped):
    """Each finished batch has its three events, each failed one its failure event, and every
    row is what production's consumers accept (the contract models)."""
    with connect(shaped.database) as conn:
        topics = dict(
            conn.execute(
                "select u.id, array_agg(o.topic order by o.topic) from cj_batch_uploads u"
                " join event_outbox o on o.aggregate_id in (u.bos_batch_id, u.id::text)"
                " group by u.id"
            ).fetchall()
        )
        assert validate_outbox(conn) == sum(map(len, topics.values()))  # none left over
        completed = {
            batch for (batch,) in conn.execute(
                "select batch_id from cj_batch_states where state = 'COMPLETED'"
            ).fetchall()
        }
        monitor_row = _outbox_row(conn, shaped.ids["monitor_failed"], FAILED_TOPIC)
        completion_row = _outbox_row(conn, shaped.ids["guest"], COMPLETED_TOPIC)
    # The batch monitor's envelope event_type is its own literal; on any other event it is
    # a contract violation, as is a payload stripped to the ids the monitoring reads.
    assert monitor_row["event_data"]["event_type"] == MONITOR_FAILED_EVENT_TYPE
    validate_outbox_row(monitor_row)
    event_data = completion_row["event_data"]
    with pytest.raises(ContractViolation, match="event_type"):
        validate_outbox_row({**completion_row, "event_data": {
            **event_data, "event_type": MONITOR_FAILED_EVENT_TYPE}})
    with pytest.raises(ContractViolation, match="processing_summary"):
        validate_outbox_row({**completion_row, "event_data": {**event_data, "data": {
            "entity_id": event_data["data"]["entity_id"],
            "cj_assessment_job_id": event_data["data"]["cj_assessment_job_id"]}}})
    told_of_failure = {"finalize_failure", "monitor_failed", "workflow_error_before_pairs"}
    for shape in SHAPES:
        batch = shaped.ids[shape.name]
        if batch in completed:
            expected = sorted([COMPLETED_TOPIC, RESULT_TOPIC, RESOURCE_TOPIC])
        elif shape.name in told_of_failure:
            expected = [FAILED_TOPIC]
        elif shape.name == "head_finalizer_crashed":  # died after the first event's commit
            expected = [COMPLETED_TOPIC]
        else:
            expected = []
        assert topics.get(batch, []) == expected, shape.name


def _outbox_row(conn, cj_batch_id: int, topic: str) -> dict:
    cursor = conn.execute(
        "select o.id, o.aggregate_id, o.aggregate_type, o.event_type, o.event_data,"
        " o.event_key, o.topic from event_outbox o join cj_batch_uploads u"
        " on o.aggregate_id in (u.bos_batch_id, u.id::text) where u.id = %s and o.topic = %s",
        (cj_batch_id, topic),
    )
    names = [column.name for column in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


def test_dbt_tests_and_check_fail_for_exactly_the_broken_shapes(shaped):
    failed = shaped.build.tests_failed
    assert failed and all(node.relation for node in failed), shaped.build.summary()
    with connect(shaped.database) as conn:
        flagged = {
            batch
            for node in failed
            for (batch,) in conn.execute(
                sql.SQL("select distinct cj_batch_id from {}").format(
                    sql.SQL(node.relation)  # dbt's own quoted relation name
                )
            ).fetchall()
        }
    assert flagged == _broken(shaped), shaped.build.summary()
    report = run_check(shaped.database)
    assert not report.success
    assert set(report.failing_batches) == _broken(shaped), report.table_lines()


def test_acknowledgement_lifecycle_through_the_cli(shaped, monkeypatch, capsys):
    database, ids = shaped.database, shaped.ids
    monkeypatch.setenv("CJ_DATABASE_URL", database.url)
    wedged, gave_up = ids["batch20_replica"], ids["relay_gave_up"]
    broken = {batch for batch, (issues, *_) in _health(database).items() if issues}
    assert broken == _broken(shaped) and {wedged, gave_up} <= broken
    assert main(["build"]) == 1

    # An acknowledgement row silences cj_batch_alerts at once, before any refresh.
    with connect(database) as conn:
        conn.execute(
            sql.SQL(
                "insert into {}.cj_batch_acknowledgements"
                " (cj_batch_id, bos_batch_id, problem_code, reason)"
                " select id, bos_batch_id, 'EVENTS_UNPUBLISHED', 'relay replayed by hand'"
                " from cj_batch_uploads where id = %s"
            ).format(sql.Identifier(monitoring_schema())),
            (gave_up,),
        )
        conn.commit()
    assert not any(batch == gave_up for batch, _ in _alerts(database))

    # The CLI: one batch by id, the rest of the history by --before.
    assert main(["ack", str(wedged), "--reason", "Batch 20, repaired upstream"]) == 0
    assert not any(batch == wedged for batch, _ in _alerts(database))
    issues, acknowledged, alerting, _ = _health(database)[wedged]
    assert "STUCK_FINALIZATION" in acknowledged and acknowledged == issues and not alerting
    assert main(["ack", "--before", "2999-01-01", "--reason", "history at deployment"]) == 0
    assert _alerts(database) == set()
    assert main(["build"]) == 0
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "accepted (acknowledged, not failing)" in out and str(wedged) in out

    # A new problem code on an acknowledged batch alerts again.
    with connect(database) as conn:
        conn.execute(
            "update cj_processed_essays set processing_metadata = '{\"is_anchor\": \"maybe\"}'"
            " where cj_batch_id = %s and is_anchor = false",
            (wedged,),
        )
        conn.commit()
    main(["refresh"])
    assert (wedged, "INVALID_ANCHOR_METADATA") in _alerts(database)
    assert main(["ack", str(wedged), "--reason", "bad metadata", "--issue",
                 "INVALID_ANCHOR_METADATA"]) == 0

    # unack restores at once; an expired acknowledgement alerts too.
    assert main(["unack", str(wedged), "--issue", "STUCK_FINALIZATION"]) == 0
    assert (wedged, "STUCK_FINALIZATION") in _alerts(database)
    with connect(database) as conn:
        conn.execute(
            sql.SQL(
                "update {}.cj_batch_acknowledgements set expires_at = now() - interval '1 s'"
                " where cj_batch_id = %s"
            ).format(sql.Identifier(monitoring_schema())),
            (gave_up,),
        )
        conn.commit()
    assert (gave_up, "EVENTS_UNPUBLISHED") in _alerts(database)

    # --list shows who, when and why; bad input has its exit codes.
    capsys.readouterr()
    assert main(["ack", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    wedged_codes = {ack["problem_code"] for ack in listed if ack["cj_batch_id"] == wedged}
    assert "STUCK_FINALIZATION" not in wedged_codes  # removed by unack
    assert "INVALID_ANCHOR_METADATA" in wedged_codes
    assert any(ack["reason"] == "history at deployment" for ack in listed)
    assert all(ack["acknowledged_by"] and ack["acknowledged_at"] for ack in listed)
    assert [ack["is_active"] for ack in listed if ack["cj_batch_id"] == gave_up] == [False]
    assert main(["ack", "999999", "--reason", "x"]) == 4
    assert main(["ack", str(wedged), "--reason", "x", "--issue", "NOT_A_CODE"]) == 2
    assert main(["ack", str(wedged), "--reason", " "]) == 2
    assert main(["unack", str(ids["guest"])]) == 2
