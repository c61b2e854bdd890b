"""Acknowledgements and incidents as on-call and analysts live them, on a real database: an
acknowledgement belongs to its batch (a reused CJ batch id does not inherit it, a reseed
removes it, rows older than the bos_batch_id column are bound safely by the build), `--by`
and relative `--until`, `unack` clearing what status and the incidents show, one `since`
everywhere, the demo's runs in cj_monitoring_runs, and `history` / `incidents`.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from conftest import eng5_template
from psycopg import sql

from cj_health import cli
from cj_health.db import Database, connect, monitoring_schema
from cj_health.durations import parse_duration
from cj_health.eng5.replay import replay_incident

# --- pure parsing --------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8h", timedelta(hours=8)),
        ("30m", timedelta(minutes=30)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("+8 hours", timedelta(hours=8)),
        ("+ 90 minutes", timedelta(minutes=90)),
        ("3 Days", timedelta(days=3)),
        (" 45min ", timedelta(minutes=45)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    "text",
    ["", "8", "h", "8x", "-8h", "8h30m", "2026-03-01 12:00+00", "tomorrow", "8.5h",
     "999999999w"],
)  # fmt: skip
def test_what_is_not_a_duration_is_none(text: str) -> None:
    assert parse_duration(text) is None


# --- on a database -------------------------------------------------------------------------


def _q(database: Database, query: str, params: tuple = ()) -> list[tuple]:
    schema = sql.Identifier(monitoring_schema())
    with connect(database) as conn:
        return conn.execute(sql.SQL(query).format(schema=schema), params).fetchall()


def _json(capsys, argv: list[str], code: int | tuple[int, ...] = 0):
    capsys.readouterr()
    result = cli.main(argv)
    out = capsys.readouterr().out
    assert result in (code if isinstance(code, tuple) else (code,)), (argv, result, out)
    return json.loads(out)


@pytest.fixture(scope="module")
def template(admin_db: Database, tmp_path_factory):
    with eng5_template(admin_db, (31,), tmp_path_factory.mktemp("runs")) as made:
        yield made


@pytest.fixture
def dev_db(make_database, template, monkeypatch: pytest.MonkeyPatch) -> Database:
    name, _ = template
    database = make_database(template=name)
    monkeypatch.setenv("CJ_DATABASE_URL", database.url)
    monkeypatch.setenv("CJ_ENVIRONMENT", "test")
    return database


def test_a_reseed_never_passes_an_acknowledgement_to_the_new_batch(dev_db, capsys) -> None:
    """The on-call story: after `demo`, status shows the demo's runs; the incident batch is
    acknowledged (all is well); a second `demo` reseeds and the new incident batch, with the
    same CJ batch id (and the replay's fixed BOS batch id), alerts again."""
    assert cli.main(["demo"]) == 0
    status = _json(capsys, ["status", "--json"], 1)
    runs = {run["command"]: run for run in status["runs"]}
    assert {command: run["exit_code"] for command, run in runs.items()} == {
        "refresh": 0, "build": 1, "check": 1,
    }  # fmt: skip
    assert not any(run["overdue"] for run in runs.values())
    assert status["problems"] == ["1 batches alerting"]
    [incident] = {i["cj_batch_id"] for i in status["open_incidents"]}

    assert cli.main(["ack", str(incident), "--reason", "known wedge", "--by", "anna"]) == 0
    status = _json(capsys, ["status", "--json"], 0)
    assert status["alerting_batches"] == 0 and status["problems"] == []
    assert {i["acknowledged_by"] for i in status["open_incidents"]} == {"anna"}

    assert cli.main(["demo"]) == 0
    status = _json(capsys, ["status", "--json"], 1)
    assert status["alerting_batches"] == 1
    reopened = status["open_incidents"]
    assert {i["cj_batch_id"] for i in reopened} == {incident}, "the id is reused"
    assert all(i["acknowledged_by"] is None for i in reopened)
    assert _json(capsys, ["ack", "--list", "--json"]) == []
    # The first demo's incidents were cleared by the reseed, not carried over.
    incidents = _json(capsys, ["incidents", "--json"])
    cleared = [i for i in incidents if i["cleared_at"] is not None]
    assert cleared and {i["acknowledged_by"] for i in cleared} == {"anna"}
    assert {(i["problem_code"]) for i in cleared} == {i["problem_code"] for i in reopened}
    assert all(i["first_seen_at"] >= c["cleared_at"] for i in reopened for c in cleared)


def test_a_reused_id_without_a_reset_does_not_inherit_the_acknowledgement(
    dev_db, capsys
) -> None:
    """The batch is deleted and its id handed to a new batch by hand (no `eng5 reset`): the
    acknowledgement stays bound to the old BOS batch id and holds for nothing."""
    incident = replay_incident(dev_db, "completed_without_timestamp").cj_batch_id
    assert cli.main(["build"]) == 1
    assert cli.main(["ack", str(incident), "--reason", "known", "--by", "anna"]) == 0
    assert not _q(dev_db, "select 1 from {schema}.cj_batch_alerts where cj_batch_id = %s",
                  (incident,))  # fmt: skip
    old_bos = _q(dev_db, "select bos_batch_id from cj_batch_uploads where id = %s", (incident,))

    with connect(dev_db) as conn:
        conn.execute("delete from grade_projections where cj_batch_id = %s", (incident,))
        conn.execute("delete from event_outbox where aggregate_id in (%s, %s)",
                     (str(incident), old_bos[0][0]))  # fmt: skip
        conn.execute("delete from cj_batch_uploads where id = %s", (incident,))
        conn.execute("select setval('cj_batch_uploads_id_seq', %s, false)", (incident,))
        conn.commit()
    reused = replay_incident(dev_db, "completed_without_timestamp", seed=5)
    assert reused.cj_batch_id == incident and reused.bos_batch_id != old_bos[0][0]

    # Live, before any refresh: the alert view no longer takes the acknowledgement.
    alerts = _q(dev_db, "select issue from {schema}.cj_batch_alerts where cj_batch_id = %s",
                (incident,))  # fmt: skip
    assert alerts, "the new batch alerts at once"
    [ack] = _json(capsys, ["ack", "--list", "--json"])
    assert (ack["is_active"], ack["is_current_batch"], ack["bos_batch_id"]) == (
        False, False, old_bos[0][0],
    )  # fmt: skip
    assert cli.main(["ack", "--list"]) == 0
    assert "not held" in capsys.readouterr().out

    assert cli.main(["refresh"]) == 0
    status = _json(capsys, ["status", "--json"], 1)
    assert status["alerting_batches"] == 1
    [opened] = [i for i in status["open_incidents"] if i["cj_batch_id"] == incident]
    assert opened["bos_batch_id"] == reused.bos_batch_id and opened["acknowledged_by"] is None
    old = [i for i in _json(capsys, ["incidents", "--json"]) if i["bos_batch_id"] == old_bos[0][0]]
    assert old and all(i["cleared_at"] is not None for i in old)


def test_acknowledgements_older_than_the_bos_batch_id_column_are_bound_by_the_build(
    dev_db, template
) -> None:
    """The table as the first release created it, with two rows: one written after its batch
    was created (bound to it by the build, holds) and one written before (cannot be for that
    batch: stays unbound and holds for nothing)."""
    _, (healthy,) = template
    incident = replay_incident(dev_db).cj_batch_id
    with connect(dev_db) as conn:
        conn.execute(
            sql.SQL(
                "create schema {schema};"
                " create table {schema}.cj_batch_acknowledgements ("
                " acknowledgement_id bigint generated always as identity primary key,"
                " cj_batch_id integer not null, problem_code text,"
                " reason text not null check (btrim(reason) <> ''),"
                " acknowledged_by text not null default current_user,"
                " acknowledged_at timestamptz not null default now(),"
                " expires_at timestamptz)"
            ).format(schema=sql.Identifier(monitoring_schema()))
        )
        conn.execute(
            sql.SQL(
                "insert into {schema}.cj_batch_acknowledgements"
                " (cj_batch_id, problem_code, reason, acknowledged_at) values"
                " (%s, null, 'after the batch', now()),"
                " (%s, null, 'before the batch', now() - interval '10 years')"
            ).format(schema=sql.Identifier(monitoring_schema())),
            (incident, healthy),
        )
        conn.commit()
    assert cli.main(["build"]) in (0, 1)
    rows = _q(
        dev_db,
        "select acknowledgements.cj_batch_id, acknowledgements.bos_batch_id, is_active,"
        " uploads.bos_batch_id from {schema}.int_acknowledgements_joined_to_batches"
        " as acknowledgements join cj_batch_uploads as uploads"
        " on uploads.id = acknowledgements.cj_batch_id order by reason",
    )
    assert rows[0][0] == incident and rows[0][1] == rows[0][3] and rows[0][2] is True
    assert rows[1][0] == healthy and rows[1][1] is None and rows[1][2] is False
    assert not _q(dev_db, "select 1 from {schema}.cj_batch_alerts")  # the incident accepted
    assert cli.main(["build"]) in (0, 1)  # the hook again: nothing changes
    assert _q(
        dev_db, "select count(*) from {schema}.cj_batch_acknowledgements where bos_batch_id is null"
    ) == [(1,)]


def test_by_until_unack_and_one_since_everywhere(dev_db, template, capsys, monkeypatch) -> None:
    incident = replay_incident(dev_db).cj_batch_id
    assert cli.main(["build"]) == 1

    # --by defaults to the login name; --until takes a duration from the server's now.
    monkeypatch.setenv("LOGNAME", "oncall-ben")
    monkeypatch.setenv("USER", "oncall-ben")
    assert cli.main(["ack", str(incident), "--reason", "r", "--issue", "NO_ANCHORS",
                     "--until", "+8 hours"]) == 0  # fmt: skip
    assert cli.main(["ack", str(incident), "--reason", "r", "--issue", "STUCK_FINALIZATION",
                     "--until", "30m", "--by", "carla"]) == 0  # fmt: skip
    listed = {a["problem_code"]: a for a in _json(capsys, ["ack", "--list", "--json"])}
    assert listed["NO_ANCHORS"]["acknowledged_by"] == "oncall-ben"
    assert listed["STUCK_FINALIZATION"]["acknowledged_by"] == "carla"
    spans = _q(
        dev_db,
        "select problem_code, expires_at - acknowledged_at"
        " from {schema}.cj_batch_acknowledgements",
    )
    assert dict(spans) == {"NO_ANCHORS": timedelta(hours=8),
                           "STUCK_FINALIZATION": timedelta(minutes=30)}  # fmt: skip
    for bad in ("soon", "0m", "-2h", "2020-01-01 00:00+00"):
        capsys.readouterr()
        assert cli.main(["ack", str(incident), "--reason", "r", f"--until={bad}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--until" in err, err
    assert len(_json(capsys, ["ack", "--list", "--json"])) == 2, "nothing written"

    # Status and the incidents show who; the text shows it too.
    status = _json(capsys, ["status", "--json"], (0, 1))
    by_code = {i["problem_code"]: i for i in status["open_incidents"]}
    assert by_code["NO_ANCHORS"]["acknowledged_by"] == "oncall-ben"
    assert by_code["STUCK_FINALIZATION"]["acknowledged_by"] == "carla"
    assert by_code["ANCHOR_FLAG_MISMATCH"]["acknowledged_by"] is None
    capsys.readouterr()
    cli.main(["status"])
    assert "acknowledged by carla" in capsys.readouterr().out

    # unack: status and cj_batch_incidents no longer say acknowledged.
    assert cli.main(["unack", str(incident)]) == 0
    status = _json(capsys, ["status", "--json"], 1)
    assert all(i["acknowledged_by"] is None and i["acknowledged_at"] is None
               for i in status["open_incidents"])  # fmt: skip
    assert _q(
        dev_db,
        "select count(*) from {schema}.cj_batch_incidents where acknowledged_by is not null",
    ) == [(0,)]
    capsys.readouterr()
    cli.main(["status"])
    assert "acknowledged by" not in capsys.readouterr().out

    # One `since`: the alert view's, the incidents' and status's agree, and it is when the
    # condition began as the data tells (the batch's last activity for STUCK_FINALIZATION),
    # before the monitoring first saw it.
    alerts = dict(_q(dev_db, "select issue, since from {schema}.cj_batch_alerts"
                             " where cj_batch_id = %s", (incident,)))  # fmt: skip
    [(last_activity,)] = _q(
        dev_db, "select last_activity_at from {schema}.cj_batch_health where cj_batch_id = %s",
        (incident,),
    )
    incidents = {i["problem_code"]: i for i in _json(capsys, ["incidents", "--open", "--json"])}
    assert set(incidents) == set(alerts)
    for code, since in alerts.items():
        assert incidents[code]["since"] == since.isoformat(timespec="seconds")
        assert by_code[code]["since"] == incidents[code]["since"]
        assert incidents[code]["since"] <= incidents[code]["first_seen_at"]
    assert incidents["STUCK_FINALIZATION"]["since"] == last_activity.isoformat(
        timespec="seconds"
    )
    capsys.readouterr()
    cli.main(["status"])
    out = capsys.readouterr().out
    stuck = incidents["STUCK_FINALIZATION"]
    assert f"since {stuck['since']}, first seen {stuck['first_seen_at']}" in out


def test_history_and_incidents_for_analysts(dev_db, template, capsys) -> None:
    incident = replay_incident(dev_db).cj_batch_id
    assert cli.main(["build"]) == 1
    assert cli.main(["refresh"]) == 0

    history = _json(capsys, ["history", "--since", "7d", "--json"])
    assert set(history) == {"since", "points", "days", "codes"}
    assert history["points"] == 2
    codes = {c["problem_code"]: c for c in history["codes"]}
    assert codes["STUCK_FINALIZATION"] == {
        "problem_code": "STUCK_FINALIZATION", "incidents_opened": 1, "batches": 1,
        "peak_batches": 1,
    }  # fmt: skip
    [today] = {row["day"] for row in history["days"]}
    day_rows = {row["problem_code"]: row for row in history["days"]}
    assert day_rows["STUCK_FINALIZATION"]["peak_alerting"] == 1, today

    incidents = _json(capsys, ["incidents", "--open", "--json"])
    [(bos,)] = _q(dev_db, "select bos_batch_id from cj_batch_uploads where id = %s", (incident,))
    assert incidents and all(i["bos_batch_id"] == bos for i in incidents)
    assert set(incidents[0]) == {
        "incident_id", "cj_batch_id", "bos_batch_id", "problem_code", "since",
        "first_seen_at", "last_seen_at", "cleared_at", "acknowledged_at", "acknowledged_by",
    }  # fmt: skip
    capsys.readouterr()
    assert cli.main(["history"]) == 0 and cli.main(["incidents"]) == 0
    out = capsys.readouterr().out
    assert "most frequent problem codes" in out and "STUCK_FINALIZATION" in out
    with connect(dev_db) as conn:
        query = "select assessment_input_text from cj_processed_essays"
        texts = [row[0] for row in conn.execute(query)]
    assert texts and not any(text in out for text in texts)

    for argv in (["history", "--since", "a week"], ["incidents", "--since", "0d"]):
        capsys.readouterr()
        assert cli.main(argv) == 2
        assert capsys.readouterr().err.count("\n") == 1
