"""`cj-health status [--json]`: the monitoring on one screen (cj_health.status)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status",
        help="the monitoring on one screen (exit 0 all well, 1 something alerts)",
        description="The target, the age of cj_batch_health, the last refresh/build/check "
        "with exit codes, batches per problem code (alerting, acknowledged) and the open "
        "incidents. Exit 0 when all is well, 1 when something alerts (a batch, a stale view, "
        "a failed or overdue run), 2 when it cannot run.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from cj_health.status import load_status
    from cj_health.target import resolve_target

    report = load_status(resolve_target().database)
    print(report.to_json() if args.json else "\n".join(report.text_lines()))
    return report.exit_code
