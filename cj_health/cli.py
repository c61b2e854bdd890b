"""`cj-health`: the operator's command line. Thin: each command lives in its own module,
which adds its arguments with `register(subparsers)` and does its work in functions that the
tests call directly. Errors print one line and exit with the code in cj_health.errors: the
tool's own errors, and a database error no command handled (cj_health.db_errors).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from importlib import metadata

import psycopg

from cj_health.commands import (
    ack,
    bench,
    build,
    change_feed,
    check,
    db,
    demo,
    eng5,
    inspect,
    status,
)
from cj_health.db_errors import describe
from cj_health.errors import EXIT_USAGE, CjHealthError

# The commands, in the order `cj-health --help` lists them. Each module defines
# register(subparsers) -> None; its parsers set `handler(args) -> int`. The modules import
# their heavy dependencies (dbt, GX, the ENG5 runner) inside the handlers.
COMMANDS = (db, build, check, eng5, inspect, ack, demo, bench, status, change_feed)
DISTRIBUTION = "cj-batch-health"


class OneLineParser(argparse.ArgumentParser):
    """An argument error is one line and exit 2, like every other bad input (subcommand
    parsers inherit this class)."""

    def error(self, message: str):
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="cj-health",
        description="Batch-health monitoring for the CJ Assessment database.",
        epilog="Exit codes: 0 ok, 1 problems found, 2 bad input or database, "
        "3 refused, 4 no such batch.",
    )
    parser.add_argument(
        "--version", action="version", version=f"cj-health {metadata.version(DISTRIBUTION)}"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    args = build_parser().parse_args(argv)
    # python_fix logs for the service's log pipeline; here its refusals and rollbacks reach
    # the operator as the command's one error line, not as extra lines on stderr.
    service_log = logging.getLogger("python_fix")
    if not service_log.handlers:
        service_log.addHandler(logging.NullHandler())
    # SIGTERM (a scheduler stopping us) ends the command like Ctrl-C: `finally` blocks run,
    # temporary folders go, a running dbt is stopped first (cj_health.dbt_runner).
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.handler(args) or 0)
    except CjHealthError as exc:
        print(f"cj-health: {exc}", file=sys.stderr)
        return exc.exit_code
    except psycopg.Error as exc:
        # Every write is one transaction: what was not committed is rolled back.
        print(f"cj-health: {describe(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cj-health: interrupted", file=sys.stderr)
        return 130


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
