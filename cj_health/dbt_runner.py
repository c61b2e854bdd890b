"""Run dbt against a target database, with the connection passed through the environment."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cj_health.db import Database, dbt_env
from cj_health.errors import CjHealthError
from cj_health.paths import project_dir


@dataclass(frozen=True)
class DbtResult:
    args: list[str]
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def dbt_executable() -> str:
    beside_python = Path(sys.executable).with_name("dbt")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("dbt")
    if not found:
        raise CjHealthError("dbt is not installed in this environment; run `make install`")
    return found


WORK_DIR_PREFIX = "cj-health-dbt-"


@contextmanager
def dbt_work_dir() -> Iterator[str]:
    """A temporary folder for dbt's target and logs, removed on every way out. Its name holds
    our pid: folders left by a killed run (SIGKILL: nothing runs on the way out) are removed
    by the next run once their process is gone."""
    _remove_orphaned_work_dirs()
    with tempfile.TemporaryDirectory(prefix=f"{WORK_DIR_PREFIX}{os.getpid()}-") as target:
        yield target


def _remove_orphaned_work_dirs() -> None:
    for folder in Path(tempfile.gettempdir()).glob(f"{WORK_DIR_PREFIX}*-*"):
        pid_text = folder.name[len(WORK_DIR_PREFIX) :].split("-", 1)[0]
        if not pid_text.isascii() or not pid_text.isdigit() or _process_alive(int(pid_text)):
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def run_dbt(
    database: Database,
    args: list[str],
    *,
    dbt_vars: dict[str, object] | None = None,
    echo: bool = False,
) -> DbtResult:
    """Run `dbt <args>` in the project against `database`; return its exit code and output.

    dbt's own exit codes: 0 success, 1 a model or test failed, 2 dbt itself could not run.
    Unless `args` name a `--target-path`, dbt works in a temporary one of its own, so that two
    runs at once (a schedule and an operator, or two test servers) never share parse state.
    """
    if "--target-path" not in args:
        with dbt_work_dir() as target:
            paths = ["--target-path", target, "--log-path", target]
            return run_dbt(database, [*args, *paths], dbt_vars=dbt_vars, echo=echo)
    command = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(project_dir()),
        "--profiles-dir",
        str(project_dir() / "profiles"),
    ]
    if dbt_vars:
        import json

        command += ["--vars", json.dumps(dbt_vars)]
    env = {**os.environ, **dbt_env(database), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    capture = None if echo else subprocess.PIPE
    with _forward_signals() as (children, received):
        if received:
            raise KeyboardInterrupt
        proc = subprocess.Popen(
            command, env=env, cwd=project_dir(), text=True, stdout=capture, stderr=capture
        )
        children.append(proc)
        stdout, stderr = proc.communicate()
    if received:
        # dbt has stopped (its transaction rolled back); the caller's `finally` blocks and
        # temporary folders are cleaned up on the way out.
        raise KeyboardInterrupt
    return DbtResult(args, proc.returncode, (stdout or "") + (stderr or ""))


@contextmanager
def _forward_signals() -> Iterator[tuple[list[subprocess.Popen], list[int]]]:
    """While dbt runs, SIGTERM and SIGINT go to dbt, and we wait for it to stop, instead of
    leaving it running. Yields (the child, once started; the signals received)."""
    children: list[subprocess.Popen] = []
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield children, received
        return

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield children, received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
