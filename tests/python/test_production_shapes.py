"""The monitoring on a production-shaped database (production_shapes): no healthy shape
alerts, the broken ones do, and acknowledgements work end to end through the CLI.

One database for the module: production's schema at head with one batch per shape, the
monitoring built over it once; the acknowledgement test then changes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from production_shapes import SHAPES, load_production_shapes
from psycopg import sql

from cj_health.build import build
from cj_health.cli import main
from cj_health.db import Database, connect, monitoring_schema


@pytest.fixture(scope="module")
def shaped(admin_db: Database) -> Iterator[tuple[Database, dict[str, int]]]:
    from conftest import _create, _drop

    database = _create(admin_db)
    try:
        ids = load_production_shapes(database)
        result = build(database)
        assert result.models_ok, result.summary()
        yield database, ids
    finally:
        _drop(admin_db, database.dbname)


def _health(database: Database) -> dict[int, tuple[list[str], list[str], bool]]:
    with connect(database) as conn:
        rows = conn.execute(
            sql.SQL(
                "select cj_batch_id, issues, acknowledged_issues, is_alerting from {}.{}"
            ).format(sql.Identifier(monitoring_schema()), sql.Identifier("cj_batch_health"))
        ).fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def _alerts(database: Database) -> set[tuple[int, str]]:
    with connect(database) as conn:
        rows = conn.execute(
            sql.SQL("select cj_batch_id, issue from {}.{}").format(
                sql.Identifier(monitoring_schema()), sql.Identifier("cj_batch_alerts")
            )
        ).fetchall()
    return {(row[0], row[1]) for row in rows}


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.name for shape in SHAPES])
def test_each_production_shape_gets_its_verdict(shaped, shape):
    database, ids = shaped
    issues, acknowledged, alerting = _health(database)[ids[shape.name]]
    assert acknowledged == []
    if shape.expected_code is None:
        assert issues == [] and not alerting, f"{shape.name} is healthy but shows {issues}"
    else:
        assert shape.expected_code in issues and alerting, f"{shape.name}: {issues}"
        assert (ids[shape.name], shape.expected_code) in _alerts(database)


def test_acknowledgement_lifecycle_through_the_cli(shaped, monkeypatch, capsys):
    database, ids = shaped
    monkeypatch.setenv("CJ_DATABASE_URL", database.url)
    wedged, gave_up = ids["batch20_replica"], ids["relay_gave_up"]
    broken = {batch for batch, (issues, _, _) in _health(database).items() if issues}
    assert broken == {wedged, gave_up, ids["events_unpublished_too_long"]}
    assert main(["build"]) == 1

    # An acknowledgement row silences cj_batch_alerts at once, before any refresh.
    with connect(database) as conn:
        conn.execute(
            sql.SQL(
                "insert into {}.cj_batch_acknowledgements (cj_batch_id, problem_code, reason)"
                " values (%s, 'EVENTS_UNPUBLISHED', 'relay replayed by hand')"
            ).format(sql.Identifier(monitoring_schema())),
            (gave_up,),
        )
        conn.commit()
    assert not any(batch == gave_up for batch, _ in _alerts(database))

    # The CLI: one batch by id, the rest of the history by --before.
    assert main(["ack", str(wedged), "--reason", "Batch 20, repaired upstream"]) == 0
    assert not any(batch == wedged for batch, _ in _alerts(database))
    issues, acknowledged, alerting = _health(database)[wedged]
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
