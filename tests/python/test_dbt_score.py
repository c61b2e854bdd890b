"""dbt-score, with its default rules, rates the project at least 9.0 out of 10: every model
and seed described, with an owner and a tested key, every macro described. It reads the
manifest `dbt parse` writes; the command by hand is in docs/dbt_design.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cj_health.db import Database
from cj_health.dbt_runner import run_dbt

MINIMUM_SCORE = 9.0


def test_dbt_score_rates_the_project_at_least_nine(cj_db: Database, tmp_path: Path) -> None:
    parsed = run_dbt(cj_db, ["parse", "--target-path", str(tmp_path)])
    assert parsed.returncode == 0, parsed.output
    lint = subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt-score")),
            "lint",
            "--manifest",
            str(tmp_path / "manifest.json"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(lint.stdout)
    failing = {
        name: [rule for rule, result in item["results"].items() if result["result"] != "OK"]
        for name, item in report["evaluables"].items()
        if item["score"] < MINIMUM_SCORE
    }
    assert report["project"]["score"] >= MINIMUM_SCORE, failing
    assert report["project"]["pass"]
