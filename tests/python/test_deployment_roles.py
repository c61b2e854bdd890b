"""The deployment the runbook documents, with three roles ("Deploy with three roles" in
docs/runbook.md, run block by block by tests/python/deployment.py): the owner of the service
tables installs the change feed, the service writes, the monitoring role builds, refreshes and
reads the status. Every command works as its role: no permission error, no traceback; the
refresh takes the feed from the second refresh on, and finds the service's writes; a
monitoring role that was not granted the queue is told so and stays exact.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from deployment import (
    MONITOR,
    OWNER,
    SERVICE,
    Deployment,
    cli,
    copy_database,
    deploy_as_runbook_says,
    three_roles,
)
from psycopg import sql
from refresh_support import stored_difference

from cj_health import change_feed
from cj_health.db import Database, connect


@pytest.fixture(scope="module")
def deployed(admin_db: Database) -> Iterator[Deployment]:
    with three_roles(admin_db) as deployment:
        deploy_as_runbook_says(deployment)
        yield deployment


def _result(deployment: Deployment, index: int):
    command, result = deployment.commands[index]
    output = result.stdout + result.stderr
    assert "Traceback" not in output, f"{command}:\n{output}"
    return command, result


def test_every_step_of_the_runbook_runs_as_its_role(deployed: Deployment) -> None:
    commands = [command for command, _ in deployed.commands]
    assert commands == [
        f"{MONITOR}: cj-health build",
        f"{OWNER}: cj-health change-feed install --refresh-role {deployed.roles[MONITOR]}",
        f"{MONITOR}: cj-health refresh",
        f"{MONITOR}: cj-health refresh",
        f"{MONITOR}: cj-health status",
        f"{MONITOR}: cj-health change-feed status",
    ]
    # build: exit 1, the data tests find the broken production shapes (not a privilege error)
    _, build = _result(deployed, 0)
    assert build.returncode == 1 and "models: " in build.stdout, build.stdout + build.stderr
    _, install = _result(deployed, 1)
    assert install.returncode == 0, install.stderr
    assert f"granted {deployed.roles[MONITOR]}" in install.stdout
    _, first = _result(deployed, 2)
    assert first.returncode == 0, first.stderr
    assert "change feed not used: no earlier refresh" in first.stdout
    _, second = _result(deployed, 3)
    assert second.returncode == 0 and "found by change feed" in second.stdout, second.stdout
    _, status = _result(deployed, 4)
    # exit 1: the broken production shapes alert; the feed is no problem
    assert status.returncode == 1, status.stderr
    assert "change feed: installed on 8 tables, 0 pending" in status.stdout
    assert "change feed's queue" not in status.stdout
    _, feed_status = _result(deployed, 5)
    assert feed_status.returncode == 0, feed_status.stderr
    assert feed_status.stdout.startswith("change feed: installed on 8 tables")


def test_the_service_writes_are_found_by_the_feed(deployed: Deployment) -> None:
    database = copy_database(deployed, "writes")
    monitor = deployed.as_role(MONITOR, database)
    with connect(deployed.as_role(SERVICE, database)) as conn:
        (batch,) = conn.execute("select min(batch_id) from cj_batch_states").fetchone()
        conn.execute(
            "update cj_batch_states set total_budget = 99 where batch_id = %s", (batch,)
        )
        conn.commit()
    refreshed = cli(monitor, "refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    assert "found by change feed), 1 batches recomputed" in refreshed.stdout, refreshed.stdout
    assert stored_difference(monitor) == (0, 0)


def test_a_monitoring_role_without_the_feed_grants_is_told_and_stays_exact(
    deployed: Deployment,
) -> None:
    database = copy_database(deployed, "ungranted")
    monitor = deployed.as_role(MONITOR, database)
    with connect(deployed.as_role(OWNER, database), autocommit=True) as conn:
        conn.execute(
            sql.SQL("revoke delete on {} from {}").format(
                sql.Identifier(change_feed.feed_schema(), change_feed.QUEUE_TABLE),
                sql.Identifier(deployed.roles[MONITOR]),
            )
        )
    with connect(deployed.as_role(SERVICE, database)) as conn:
        conn.execute("delete from grade_projections where cj_batch_id ="
                     " (select min(cj_batch_id) from grade_projections)")
        conn.commit()
    refreshed = cli(monitor, "refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    assert "may not take the queue" in refreshed.stdout, refreshed.stdout
    assert stored_difference(monitor) == (0, 0)
    status = cli(monitor, "status")
    assert "Traceback" not in status.stdout + status.stderr
    assert status.returncode == 1
    assert "the change feed's queue is not taken by this role and grows" in status.stdout
    feed_status = cli(monitor, "change-feed", "status")
    assert feed_status.returncode == 1 and "may not take the queue" in feed_status.stdout
    # What it says to run fixes it.
    reinstall = cli(
        deployed.as_role(OWNER, database),
        "change-feed", "install", "--refresh-role", deployed.roles[MONITOR],
    )
    assert reinstall.returncode == 0, reinstall.stderr
    assert cli(monitor, "change-feed", "status").returncode == 0
