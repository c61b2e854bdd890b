"""`cj-health check`: the Great Expectations checkpoint as a scheduled data check.

`run_check(database)` reads the checked-in GX context in great_expectations/ (generated from
the rules dbt compiles by `make gx`, cj_health.gx.generate) and writes only under
great_expectations/uncommitted/ (Data Docs, validation results; an installed copy of the tool
runs a working copy of the context in its state folder, cj_health.gx.context.runtime_root):
1. makes sure the monitoring relations exist (else: "run `cj-health build` first", exit 2);
2. refreshes `cj_batch_health` (REFRESH MATERIALIZED VIEW CONCURRENTLY: readers are never
   blocked) so the view's rules judge the data as it is now (`refresh=False` skips this);
3. runs the checkpoint `cj_health`: validates every suite (one progress line each) and
   updates the Data Docs;
4. returns a CheckReport: each rule's status and failing batches, and the Data Docs path.

Exit codes: 0 when every rule holds, 1 when any fails, 2 (CjHealthError) when the check
itself cannot run: database unreachable, models not built, a rule naming a missing
relation or column.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cj_health.db import Database
from cj_health.errors import EXIT_OK, EXIT_PROBLEMS_FOUND
from cj_health.gx import context as gx_context
from cj_health.gx.run import RuleResult, require_relations, run_checkpoint

SHOWN_BATCHES = 8


@dataclass
class CheckReport:
    success: bool
    rules: list[RuleResult]
    data_docs_path: Path

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.success else EXIT_PROBLEMS_FOUND

    @property
    def failing_batches(self) -> list[int]:
        return sorted({b for rule in self.rules for b in rule.failing_batches})

    def as_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "rules": [rule.as_dict() for rule in self.rules],
            "failing_batches": self.failing_batches,
            "data_docs": str(self.data_docs_path),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    def table_lines(self) -> list[str]:
        """rule | status | failing batches, one line per rule, then the verdict."""
        rows = [(r.rule, "ok" if r.success else "FAIL", _batches(r)) for r in self.rules]
        width = max([len("rule"), *(len(row[0]) for row in rows)])
        lines = [f"{'rule'.ljust(width)}  status  failing batches"]
        lines += [f"{name.ljust(width)}  {status:<6}  {batches}" for name, status, batches in rows]
        failed = sum(not rule.success for rule in self.rules)
        verdict = "all rules hold" if self.success else f"{failed} of {len(self.rules)} rules FAIL"
        lines.append(f"{verdict}; Data Docs: {self.data_docs_path}")
        return lines


def _batches(rule: RuleResult) -> str:
    if rule.success:
        return "-"
    if not rule.failing_batches:
        return f"({rule.failing_rows} rows)"
    shown = ", ".join(str(b) for b in rule.failing_batches[:SHOWN_BATCHES])
    more = len(rule.failing_batches) - SHOWN_BATCHES
    return shown + (f" (+{more} more)" if more > 0 else "")


def run_check(
    database: Database,
    *,
    refresh: bool = True,
    context_root: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> CheckReport:
    """Run the data checks (see the module docstring); `progress` gets one line per GX
    suite as it is validated."""
    root = context_root or gx_context.runtime_root()
    require_relations(database, gx_context.asset_tables(root))
    if refresh:
        from cj_health.build import refresh as refresh_health_view

        refresh_health_view(database)
    outcome = run_checkpoint(database, root, progress=progress)
    return CheckReport(outcome.success, outcome.rules, outcome.data_docs_index)
