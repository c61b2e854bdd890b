"""Run dbt against a target database, with the connection passed through the environment.

dbt's output is captured (or, with `echo`, shown as it runs, as `--verbose` does); a
`progress` callback gets one line per node as dbt finishes it ("3 of 37 OK created sql view
model ..."), so a long build is never silent. dbt colours its output only when it writes to
a terminal (DBT_USE_COLORS), so a piped `--verbose` log holds no escape codes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cj_health.db import Database, dbt_env
from cj_health.errors import CjHealthError
from cj_health.paths import project_dir, state_dir


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
KEPT_WORK_DIR = "dbt"
# dbt's line for a finished node: "12 of 37 OK created sql view model schema.name ... [OK in
# 0.05s]" (PASS, FAIL, WARN, ERROR, SKIP for tests and failures), after its time prefix.
_NODE_DONE = re.compile(r"^(\d+) of (\d+) (OK|PASS|FAIL|WARN|ERROR|SKIP|NO-OP)\b(.*)$")
_DOT_LEADER = re.compile(r"\s*\.{3,}\s*")


@contextmanager
def dbt_work_dir(*, keep: bool = False) -> Iterator[str]:
    """A folder for dbt's target and logs. Its name holds our pid: folders left by a killed run
    (SIGKILL: nothing runs on the way out) are removed by the next run once their process is
    gone. Temporary and removed on every way out; with `keep` (`build --verbose`, whose log
    names the compiled SQL of each node) `<state folder>/dbt/<pid>`, kept until the next run."""
    _remove_orphaned_work_dirs()
    if keep:
        folder = kept_work_dir()
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        yield str(folder)
        return
    with tempfile.TemporaryDirectory(prefix=f"{WORK_DIR_PREFIX}{os.getpid()}-") as target:
        yield target


def kept_work_dir() -> Path:
    """Where `dbt_work_dir(keep=True)` puts dbt's target and logs in this process."""
    return state_dir() / KEPT_WORK_DIR / str(os.getpid())


def _remove_orphaned_work_dirs() -> None:
    temporary = Path(tempfile.gettempdir()).glob(f"{WORK_DIR_PREFIX}*-*")
    for folder in temporary:
        pid_text = folder.name[len(WORK_DIR_PREFIX) :].split("-", 1)[0]
        if pid_text.isascii() and pid_text.isdigit() and not _process_alive(int(pid_text)):
            shutil.rmtree(folder, ignore_errors=True)
    kept = state_dir() / KEPT_WORK_DIR
    for folder in kept.glob("*") if kept.is_dir() else ():
        if folder.name.isascii() and folder.name.isdigit() and not _process_alive(int(folder.name)):
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
    progress: Callable[[str], None] | None = None,
) -> DbtResult:
    """Run `dbt <args>` in the project against `database`; return its exit code and output.

    dbt's own exit codes: 0 success, 1 a model or test failed, 2 dbt itself could not run.
    Unless `args` name a `--target-path`, dbt works in a temporary one of its own, so that two
    runs at once (a schedule and an operator, or two test servers) never share parse state.
    With `echo`, dbt writes to our stdout and stderr as it runs (nothing is captured);
    otherwise `progress`, if given, gets `node_progress()` of each finished node.
    """
    if "--target-path" not in args:
        with dbt_work_dir() as target:
            paths = ["--target-path", target, "--log-path", target]
            return run_dbt(
                database, [*args, *paths], dbt_vars=dbt_vars, echo=echo, progress=progress
            )
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
    env = {
        **os.environ,
        **dbt_env(database),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_USE_COLORS": "true" if echo and sys.stdout.isatty() else "false",
    }
    lines: list[str] = []
    with _forward_signals() as (children, received):
        if received:
            raise KeyboardInterrupt
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=project_dir(),
            text=True,
            stdout=None if echo else subprocess.PIPE,
            stderr=None if echo else subprocess.STDOUT,
        )
        children.append(proc)
        for line in proc.stdout or ():
            lines.append(line)
            done = node_progress(line)
            if done and progress:
                progress(done)
        proc.wait()
    if received:
        # dbt has stopped (its transaction rolled back); the caller's `finally` blocks and
        # temporary folders are cleaned up on the way out.
        raise KeyboardInterrupt
    return DbtResult(args, proc.returncode, "".join(lines))


def node_progress(line: str) -> str | None:
    """dbt's line for a finished node, without its time prefix and dot leader; None for
    every other line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
    head, _, rest = text.partition("  ")
    if rest and head.count(":") == 2 and head.replace(":", "").isdigit():
        text = rest.strip()
    if not _NODE_DONE.match(text):
        return None
    return _DOT_LEADER.sub(" ", text)


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
