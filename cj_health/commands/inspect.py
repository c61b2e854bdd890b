"""`cj-health inspect CJ_BATCH_ID [--json]`: diagnostics for one batch."""

from __future__ import annotations

import argparse

from cj_health.inspect import load_report, parse_batch_id, render_json, render_text
from cj_health.target import resolve_target


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inspect", help="show one CJ batch's state and health")
    parser.add_argument("cj_batch_id", help="the CJ batch id (cj_batch_uploads.id)")
    parser.add_argument("--json", action="store_true", help="stable machine-readable output")
    parser.set_defaults(handler=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    cj_batch_id = parse_batch_id(args.cj_batch_id)
    report = load_report(resolve_target().database, cj_batch_id).as_dict()
    print(render_json(report) if args.json else render_text(report))
    return 0
