"""dbt's log lines as `cj-health build` reports its progress (cj_health.dbt_runner)."""

from __future__ import annotations

import pytest

from cj_health.dbt_runner import node_progress

pytestmark = pytest.mark.unit


def test_a_finished_node_is_one_line_without_time_colour_or_dot_leader() -> None:
    line = (
        "\x1b[0m13:11:20  12 of 37 OK created sql view model cj_monitoring.stg_cj__batch_uploads"
        " ......... [\x1b[32mCREATE VIEW\x1b[0m in 0.05s]\n"
    )
    assert node_progress(line) == (
        "12 of 37 OK created sql view model cj_monitoring.stg_cj__batch_uploads"
        " [CREATE VIEW in 0.05s]"
    )


@pytest.mark.parametrize("status", ["PASS", "FAIL", "WARN", "ERROR", "SKIP"])
def test_test_results_of_every_status_are_progress(status: str) -> None:
    line = f"13:11:21  3 of 90 {status} assert_counters_match_pairs ..... [{status} in 0.1s]"
    assert node_progress(line) == f"3 of 90 {status} assert_counters_match_pairs [{status} in 0.1s]"


@pytest.mark.parametrize(
    "line",
    [
        "13:11:20  1 of 37 START sql view model cj_monitoring.x ......... [RUN]",
        "13:11:20  Done. PASS=35 WARN=0 ERROR=0 SKIP=0 NO-OP=2 TOTAL=37",
        "13:11:19  Found 28 models, 1 seed, 105 data tests",
        "13:11:20  Completed successfully",
        "",
    ],
)
def test_other_lines_are_not_progress(line: str) -> None:
    assert node_progress(line) is None
