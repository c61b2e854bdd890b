"""`cj-health build` and `cj-health check` say what they are doing while they run: one line per
dbt node and one per GX suite, on stderr (stdout keeps the summary, and `check --json` stays
machine-readable). `build --verbose` shows dbt's own log, without colour codes when piped, and
the compiled SQL it names still exists afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from cj_health import cli
from cj_health.db import Database
from cj_health.gx import context as gx_context

CLI = [sys.executable, "-m", "cj_health.cli"]
NODE_LINE = re.compile(r"^  \d+ of \d+ (OK|PASS|FAIL|WARN|ERROR|SKIP|NO-OP) ")


def suites() -> list[str]:
    return sorted(path.stem for path in (gx_context.default_root() / "expectations").glob("*.json"))


def test_build_prints_one_line_per_dbt_node_on_stderr(cj_env: Database, capsys) -> None:
    assert cli.main(["build"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    nodes = [line for line in lines if NODE_LINE.match(line)]
    assert nodes and len(nodes) == len(lines), captured.err
    assert any("cj_batch_health" in line and " OK " in line for line in nodes)
    assert any(" PASS " in line for line in nodes), "the dbt tests report as they pass"
    assert "models:" in captured.out and "tests:" in captured.out
    assert not NODE_LINE.search(captured.out)


def test_check_prints_one_line_per_suite_and_keeps_json_on_stdout(cj_env: Database, capsys):
    assert cli.main(["build"]) == 0
    capsys.readouterr()
    assert cli.main(["check", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["success"] is True
    named = sorted(line.strip().split(":")[0] for line in captured.err.splitlines())
    assert named == suites()
    for line in captured.err.splitlines():
        assert re.match(r"^  \w+: (\d+) of \1 rules hold \(ok\)$", line), line


def test_verbose_build_shows_dbts_log_uncoloured_and_keeps_the_compiled_sql(
    cj_env: Database, tmp_path: Path
) -> None:
    env = {**os.environ, "CJ_HEALTH_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        [*CLI, "build", "--verbose"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    log = done.stdout + done.stderr
    assert "\x1b[" not in log, "dbt coloured its log although it was piped"
    assert "Completed successfully" in log
    [kept_line] = [line for line in done.stderr.splitlines() if "compiled SQL" in line]
    kept = Path(kept_line.split("logs: ", 1)[1].split(" (", 1)[0])
    assert kept.parent == tmp_path / "state" / "dbt"
    compiled = list((kept / "compiled").rglob("*.sql"))
    assert any(path.name == "cj_batch_health.sql" for path in compiled)
    assert (kept / "dbt.log").is_file()
