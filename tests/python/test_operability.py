"""Health over time on a real database: cj_health_history, cj_batch_incidents and
cj_monitoring_runs as `cj-health build`, `refresh` and `check` write them; `cj-health status`;
the Grafana dead man's switch and last-run-failed rules read as the reader; source freshness
as a warning; the enforced contracts of the view marts.

The scenario is the one on-call lives through: a healthy dev database is built, refreshed
twice, the Batch 20 incident is replayed, refreshed and checked.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import eng5_template
from psycopg import sql
from reader_support import grafana_connect, reader_login

from cj_health import cli
from cj_health.bench import grafana_sql
from cj_health.bench.grafana_sql import expand_macros
from cj_health.db import Database, connect, monitoring_schema
from cj_health.dbt_runner import run_dbt
from cj_health.eng5.replay import replay_incident
from cj_health.monitoring_tables import MONITORING_TABLES
from cj_health.paths import project_dir
from cj_health.runs import Run, write_run


def _table(name: str) -> sql.Composed:
    return sql.Identifier(monitoring_schema(), name)


def _rows(database: Database, query: str, params: tuple = ()) -> list[tuple]:
    with connect(database) as conn:
        return conn.execute(
            sql.SQL(query).format(
                history=_table("cj_health_history"),
                incidents=_table("cj_batch_incidents"),
                runs=_table("cj_monitoring_runs"),
            ),
            params,
        ).fetchall()


def _rule_rows(reader: Database, uid: str) -> dict[str, float]:
    rules = grafana_sql.load_yaml(grafana_sql.alert_rules_path())
    rule = next(r for group in rules["groups"] for r in group["rules"] if r["uid"] == uid)
    [query] = grafana_sql.rule_queries({"groups": [{"rules": [rule]}]})
    now = datetime.now(UTC)
    with grafana_connect(reader) as conn:
        rows = conn.execute(
            expand_macros(query.raw_sql, time_from=now - timedelta(hours=1), time_to=now)
        ).fetchall()
    return {label: float(value) for label, value in rows}


@pytest.fixture(scope="module")
def healthy_template(admin_db: Database, tmp_path_factory) -> Iterator[tuple[str, list[int]]]:
    with eng5_template(admin_db, (21,), tmp_path_factory.mktemp("runs")) as template:
        yield template


@pytest.fixture
def dev_db(make_database, healthy_template, monkeypatch: pytest.MonkeyPatch) -> Database:
    name, _ = healthy_template
    database = make_database(template=name)
    monkeypatch.setenv("CJ_DATABASE_URL", database.url)
    return database


def test_refresh_check_and_status_before_build_fail_in_one_line(cj_env, capsys) -> None:
    for command in (["refresh"], ["check"], ["status"], ["status", "--json"]):
        assert cli.main(command) == 2, command
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1, captured.err
        assert "cj-health build" in captured.err, captured.err
        assert "Traceback" not in captured.err


def test_history_incidents_and_runs_over_the_incident(dev_db, healthy_template, capsys) -> None:
    _, (healthy,) = healthy_template
    assert cli.main(["build"]) == 0
    assert cli.main(["refresh"]) == 0
    assert cli.main(["refresh"]) == 0
    incident = replay_incident(dev_db).cj_batch_id
    assert cli.main(["refresh"]) == 0
    assert cli.main(["check"]) == 1
    capsys.readouterr()

    # One point per refresh of the view: build's, three refreshes, check's own.
    points = _rows(
        dev_db,
        "select refreshed_at, batch_count, alerting_count, alerting_by_problem_code,"
        " batches_by_health_status from {history} order by refreshed_at",
    )
    assert len(points) == 5
    assert [point[1] for point in points] == [1, 1, 1, 2, 2]
    assert [point[2] for point in points] == [0, 0, 0, 1, 1]
    assert points[0][4] == {"HEALTHY": 1} and points[0][3] == {}
    assert points[-1][3]["STUCK_FINALIZATION"] == 1

    # An open incident for each of the replayed batch's codes, none for the healthy batch.
    incidents = _rows(
        dev_db,
        "select cj_batch_id, problem_code, first_seen_at, last_seen_at, cleared_at,"
        " batch_last_activity_at from {incidents}",
    )
    assert {row[0] for row in incidents} == {incident}
    codes = {row[1] for row in incidents}
    assert {"STUCK_FINALIZATION", "ANCHOR_FLAG_MISMATCH"} <= codes
    assert all(row[4] is None for row in incidents), "nothing has cleared"
    first_seen = {row[1]: row[2] for row in incidents}
    # seen at the refresh after the replay, and again at check's refresh
    assert first_seen["STUCK_FINALIZATION"] == points[3][0]
    assert all(row[3] == points[4][0] for row in incidents)
    assert all(row[5] is not None and row[5] <= row[2] for row in incidents), "time to detect"

    # Every run with its exit code.
    runs = _rows(dev_db, "select command, exit_code, summary from {runs} order by run_id")
    assert [(command, code) for command, code, _ in runs] == [
        ("build", 0),
        ("refresh", 0),
        ("refresh", 0),
        ("refresh", 0),
        ("check", 1),
    ]
    check_summary = runs[-1][2]
    assert "no_batch_alerting" in check_summary["failing_rules"]
    assert check_summary["failing_batches"] == [incident]

    # The status screen: exit 1 (a batch alerts), the open incidents, the last runs.
    assert cli.main(["status", "--json"]) == 1
    status = json.loads(capsys.readouterr().out)
    assert status["alerting_batches"] == 1
    assert {(i["cj_batch_id"], i["problem_code"]) for i in status["open_incidents"]} == {
        (incident, code) for code in codes
    }
    by_command = {run["command"]: run for run in status["runs"]}
    assert by_command["check"]["exit_code"] == 1 and by_command["build"]["exit_code"] == 0
    stuck = next(c for c in status["problem_codes"] if c["problem_code"] == "STUCK_FINALIZATION")
    assert stuck["alerting"] == 1 and stuck["acknowledged"] == 0
    assert "1 batches alerting" in status["problems"]

    # None of the three tables holds essay text.
    with connect(dev_db) as conn:
        texts = [
            row[0] for row in conn.execute("select assessment_input_text from cj_processed_essays")
        ]
        dumped = "".join(
            str(row)
            for table in MONITORING_TABLES
            for row in conn.execute(sql.SQL("select t::text from {} t").format(_table(table)))
        )
    assert texts and not any(text in dumped for text in texts)


def test_a_cleared_problem_that_comes_back_opens_a_new_incident(dev_db) -> None:
    assert cli.main(["build"]) == 0
    incident = replay_incident(dev_db).cj_batch_id
    assert cli.main(["refresh"]) == 0

    def set_anchor_flags(value: bool) -> None:
        with connect(dev_db) as conn:
            conn.execute(
                "update cj_processed_essays set is_anchor = %s"
                " where cj_batch_id = %s and processing_metadata->>'is_anchor' = 'true'",
                (value, incident),
            )

    set_anchor_flags(True)  # the repository fix: the flags follow the metadata
    assert cli.main(["refresh"]) == 0
    set_anchor_flags(False)  # and the fault is back
    assert cli.main(["refresh"]) == 0
    rows = _rows(
        dev_db,
        "select first_seen_at, cleared_at from {incidents}"
        " where cj_batch_id = %s and problem_code = 'ANCHOR_FLAG_MISMATCH' order by first_seen_at",
        (incident,),
    )
    assert len(rows) == 2
    (first_seen, cleared), (reopened, still_open) = rows
    assert cleared is not None and first_seen < cleared <= reopened
    assert still_open is None
    # STUCK_FINALIZATION never cleared: one incident, still open
    stuck = _rows(
        dev_db,
        "select cleared_at from {incidents}"
        " where cj_batch_id = %s and problem_code = 'STUCK_FINALIZATION'",
        (incident,),
    )
    assert stuck == [(None,)]


def _insert_history_point(conn, at: datetime) -> None:
    conn.execute(
        sql.SQL(
            "insert into {} (refreshed_at, batch_count, alerting_count,"
            " batches_by_health_status, batches_by_problem_code, alerting_by_problem_code)"
            " values (%s, 0, 0, '{{}}', '{{}}', '{{}}')"
        ).format(_table("cj_health_history")),
        (at,),
    )


def test_retention_follows_the_vars_of_the_last_build(dev_db) -> None:
    """`--vars` of a build reach the pruning (dbt resolves them into int_monitoring_settings);
    a retention that is no whole number of days, at least 1, stops the build."""
    from cj_health.build import build

    assert build(dev_db, dbt_vars={"history_retention_days": 0}).exit_code == 2
    assert build(dev_db, dbt_vars={"history_retention_days": 1.5}).exit_code == 2
    assert build(dev_db, dbt_vars={"history_retention_days": 1}).exit_code == 0
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    with connect(dev_db) as conn:
        _insert_history_point(conn, two_days_ago)
    assert cli.main(["refresh"]) == 0
    assert _rows(
        dev_db, "select count(*) from {history} where refreshed_at = %s", (two_days_ago,)
    ) == [(0,)]


def test_old_rows_are_pruned_by_the_retention_vars(dev_db) -> None:
    assert cli.main(["build"]) == 0
    long_ago = datetime.now(UTC) - timedelta(days=400)
    with connect(dev_db) as conn:
        _insert_history_point(conn, long_ago)
        conn.execute(
            sql.SQL(
                "insert into {} (cj_batch_id, problem_code, first_seen_at, last_seen_at,"
                " cleared_at) values (1, 'STALLED', %s, %s, %s), (2, 'STALLED', %s, %s, null)"
            ).format(_table("cj_batch_incidents")),
            (long_ago, long_ago, long_ago, long_ago, long_ago),
        )
    write_run(dev_db, Run("check", long_ago, 0), finished_at=long_ago)
    assert cli.main(["refresh"]) == 0
    assert _rows(dev_db, "select count(*) from {history} where refreshed_at = %s", (long_ago,)) == [
        (0,)
    ]
    # the cleared incident is gone, the open one stays however old
    assert _rows(
        dev_db, "select cj_batch_id from {incidents} where first_seen_at = %s", (long_ago,)
    ) == [(2,)]
    assert _rows(dev_db, "select command from {runs} order by run_id") == [
        ("build",),
        ("refresh",),
    ]


def test_dead_mans_switch_and_failed_run_rules_as_the_reader(dev_db) -> None:
    assert cli.main(["build"]) == 0
    with reader_login(dev_db) as reader:
        # Nothing scheduled has run yet: both commands are overdue, nothing has failed.
        overdue = _rule_rows(reader, "cj-monitoring-overdue")
        assert set(overdue) == {"refresh", "check"} and min(overdue.values()) > 2
        assert _rule_rows(reader, "cj-monitoring-run-failed") == {"build": 0.0}

        assert cli.main(["refresh"]) == 0
        overdue = _rule_rows(reader, "cj-monitoring-overdue")
        assert overdue["refresh"] < 2 and overdue["check"] > 2

        # A check that ran 40 minutes ago (twice its 15-minute interval has passed) is
        # overdue; one 10 minutes ago is not.
        now = datetime.now(UTC)
        write_run(dev_db, Run("check", now - timedelta(minutes=41), 1), now - timedelta(minutes=40))
        assert _rule_rows(reader, "cj-monitoring-overdue")["check"] > 2
        write_run(dev_db, Run("check", now - timedelta(minutes=11), 0), now - timedelta(minutes=10))
        assert _rule_rows(reader, "cj-monitoring-overdue")["check"] < 2

        # The last refresh could not run: the failed-run rule fires for it alone.
        write_run(dev_db, Run("refresh", now, 2, {"error": "cannot connect"}))
        assert _rule_rows(reader, "cj-monitoring-run-failed") == {
            "build": 0.0,
            "check": 0.0,
            "refresh": 1.0,
        }
        # and so does the status screen
        assert cli.main(["status"]) == 1


def test_source_freshness_warns_and_never_errors_on_a_quiet_database(dev_db, tmp_path) -> None:
    with connect(dev_db) as conn:
        conn.execute("update cj_batch_states set last_activity_at = now() - interval '3 days'")
        conn.execute(
            "update cj_batch_uploads set created_at = (now() - interval '3 days')::timestamp"
        )
        conn.execute("update event_outbox set created_at = now() - interval '3 days'")
    result = run_dbt(dev_db, ["source", "freshness", "--target-path", str(tmp_path)])
    assert result.ok, result.output[-2000:]
    sources = json.loads((tmp_path / "sources.json").read_text())
    statuses = {entry["unique_id"].split(".")[-1]: entry["status"] for entry in sources["results"]}
    assert statuses == {
        "cj_batch_uploads": "warn",
        "cj_batch_states": "warn",
        "event_outbox": "warn",
    }


def test_a_changed_column_of_a_contracted_mart_fails_the_build(
    dev_db, tmp_path, monkeypatch
) -> None:
    copy = tmp_path / "project"
    shutil.copytree(
        project_dir(),
        copy,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", ".cj-health", "target", "logs", "*.egg-info"
        ),
    )
    model = copy / "models" / "marts" / "cj_problem_codes.sql"
    text = model.read_text()
    assert "{{ loop.index }} as severity_rank" in text
    model.write_text(
        text.replace(
            "{{ loop.index }} as severity_rank", "'{{ loop.index }}'::text as severity_rank"
        )
    )
    monkeypatch.setenv("CJ_HEALTH_PROJECT_DIR", str(copy))
    result = run_dbt(dev_db, ["run", "--select", "cj_problem_codes"])
    assert not result.ok
    assert "contract" in result.output.lower() and "severity_rank" in result.output
