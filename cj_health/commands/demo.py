"""`cj-health demo`: the main job (what `make demo` runs)."""

from __future__ import annotations

import argparse

from cj_health.guard import dev_only
from cj_health.target import resolve_target


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="reseed ENG5 dev data, replay Batch 20, build, inspect and check (the main job)",
    )
    parser.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from cj_health.demo import run_demo

    run_demo(dev_only(resolve_target(), "run the demo (it reseeds) in").database)
    return 0
