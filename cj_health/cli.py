"""`cj-health`: the operator's command line. Thin: each command lives in its own module,
which adds its arguments with `register(subparsers)` and does its work in functions that the
tests call directly. Errors print one line and exit with the code in cj_health.errors.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from cj_health.errors import CjHealthError

# Each module defines register(subparsers) -> None; its parsers set `handler(args) -> int`.
COMMAND_MODULES = (
    "cj_health.commands.db",
    "cj_health.commands.build",
    "cj_health.commands.check",
    "cj_health.commands.eng5",
    "cj_health.commands.inspect",
    "cj_health.commands.ack",
    "cj_health.commands.demo",
    "cj_health.commands.bench",
    "cj_health.commands.status",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cj-health",
        description="Batch-health monitoring for the CJ Assessment database.",
        epilog="Exit codes: 0 ok, 1 problems found, 2 bad input or database, "
        "3 refused, 4 no such batch.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command not written yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CjHealthError as exc:
        print(f"cj-health: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cj-health: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
