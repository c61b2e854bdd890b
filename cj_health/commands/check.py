"""`cj-health check [--json] [--no-refresh]`: the Great Expectations data checks."""

from __future__ import annotations

import argparse
import sys

from cj_health.target import resolve_target


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="run the Great Expectations checkpoint (exit 0 all hold, 1 a rule fails)",
        description="Validate the CJ data rules (the dbt invariants, generated into GX suites) "
        "and the health view with the Great Expectations checkpoint `cj_health`, update the "
        "Data Docs, and print rule | status | failing batches. Exit 0 when every rule holds, "
        "1 when any fails, 2 when the check cannot run.",
    )
    parser.add_argument(
        "--json", action="store_true", help="print a machine-readable summary instead"
    )
    parser.add_argument(
        "--no-refresh",
        dest="refresh",
        action="store_false",
        help="validate cj_batch_health as it is, without refreshing it first",
    )
    parser.set_defaults(handler=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    import json

    from cj_health.acknowledgements import accepted_batches, accepted_line
    from cj_health.check import run_check
    from cj_health.runs import check_summary, recorded_run

    database = resolve_target().database
    with recorded_run(database, "check") as run:
        report = run_check(database, refresh=args.refresh, progress=_progress)
        run.exit_code = report.exit_code
        run.summary = check_summary(report)
    accepted = accepted_batches(database)
    if args.json:
        summary = report.as_dict()
        summary["accepted"] = {str(batch): codes for batch, codes in accepted.items()}
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print("\n".join(report.table_lines()))
        line = accepted_line(accepted)
        if line:
            print(line)
    return report.exit_code


def _progress(line: str) -> None:
    """One line per GX suite as it is validated, on stderr (stdout holds the table or the
    --json summary)."""
    print(f"  {line}", file=sys.stderr, flush=True)
