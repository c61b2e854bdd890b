"""`cj-health history` and `cj-health incidents`: the monitoring's record over time, for
analysts and on-call (cj_health.history)."""

from __future__ import annotations

import argparse
from datetime import timedelta

from cj_health.durations import EXAMPLES, parse_duration
from cj_health.errors import CjHealthError
from cj_health.text import escape


def register(subparsers: argparse._SubParsersAction) -> None:
    history = subparsers.add_parser(
        "history",
        help="problem codes over time: per day, and the most frequent codes",
        description="From cj_health_history and cj_batch_incidents: per day (UTC) and problem "
        "code the most batches showing it and alerting on it at any refresh, and the incidents "
        "opened; and the codes of the period, most frequent first.",
    )
    history.add_argument(
        "--since", default="7d", metavar="DURATION", help=f"how far back ({EXAMPLES}; default 7d)"
    )
    history.add_argument("--json", action="store_true", help="machine-readable output")
    history.set_defaults(handler=cmd_history)

    incidents = subparsers.add_parser(
        "incidents",
        help="the incidents (batch and problem code, since, first seen, cleared, acknowledged)",
        description="cj_batch_incidents, open ones first. `since` is when the condition began as "
        "far as the data tells (e.g. the batch's last activity); `first seen` is the refresh "
        "that found it.",
    )
    incidents.add_argument("--open", action="store_true", help="only the open incidents")
    incidents.add_argument(
        "--since",
        metavar="DURATION",
        help=f"only incidents open now or cleared within this time ({EXAMPLES})",
    )
    incidents.add_argument("--json", action="store_true", help="machine-readable output")
    incidents.set_defaults(handler=cmd_incidents)


def _duration(text: str) -> timedelta:
    duration = parse_duration(text)
    if duration is None or duration <= timedelta(0):
        raise CjHealthError(f"--since {escape(repr(text))} is not a duration ({EXAMPLES})")
    return duration


def cmd_history(args: argparse.Namespace) -> int:
    from cj_health.history import load_history
    from cj_health.target import resolve_target

    since = _duration(args.since)
    summary = load_history(resolve_target().database, since)
    print(summary.to_json() if args.json else "\n".join(summary.text_lines()))
    return 0


def cmd_incidents(args: argparse.Namespace) -> int:
    from cj_health.history import incidents_json, incidents_lines, load_incidents
    from cj_health.target import resolve_target

    since = _duration(args.since) if args.since is not None else None
    rows = load_incidents(resolve_target().database, open_only=args.open, since=since)
    print(incidents_json(rows) if args.json else "\n".join(incidents_lines(rows)))
    return 0
