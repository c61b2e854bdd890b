"""Run dbt against a target database, with the connection passed through the environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
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
        with tempfile.TemporaryDirectory(prefix="cj-health-dbt-") as target:
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
    if echo:
        proc = subprocess.run(command, env=env, cwd=project_dir(), text=True)
        return DbtResult(args, proc.returncode, "")
    proc = subprocess.run(command, env=env, cwd=project_dir(), text=True, capture_output=True)
    return DbtResult(args, proc.returncode, proc.stdout + proc.stderr)
