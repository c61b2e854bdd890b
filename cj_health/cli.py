"""`cj-health`: the operator's command line. Thin: each command lives in its own module,
which adds its arguments with `register(subparsers)` and does its work in functions that the
tests call directly. Errors print one line and exit with the code in cj_health.errors: the
tool's own errors, a database error no command handled (cj_health.db_errors), an argument that
is not valid UTF-8 or holds a control character (cj_health.text), and a reader of the output
that went away (`| head`: exit 141, quietly).
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
    history,
    inspect,
    status,
)
from cj_health.db_errors import describe
from cj_health.errors import EXIT_BROKEN_PIPE, EXIT_USAGE, CjHealthError
from cj_health.text import check_input, escape

# The commands, in the order `cj-health --help` lists them. Each module defines
# register(subparsers) -> None; its parsers set `handler(args) -> int`. The modules import
# their heavy dependencies (dbt, GX, the ENG5 runner) inside the handlers.
COMMANDS = (db, build, check, eng5, inspect, ack, demo, bench, status, history, change_feed)
DISTRIBUTION = "cj-batch-health"
# Arguments whose value is free text: tabs and line breaks allowed (folded into spaces).
FREE_TEXT_ARGUMENTS = ("reason",)
# How an argument is named in an error, when not `--<dest>`.
ARGUMENT_NAMES = {
    "cj_batch_id": "CJ_BATCH_ID",
    "cj_batch_ids": "CJ_BATCH_ID",
    "fault": "FAULT",
    "bos_batch_id": "--batch-id",
}


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


def check_arguments(args: argparse.Namespace) -> None:
    """Every argument is valid UTF-8 without control characters (cj_health.text), before any
    command runs: CjHealthError (exit 2) naming the first that is not."""
    for dest, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str | os.PathLike):
                name = ARGUMENT_NAMES.get(dest, "--" + dest.replace("_", "-"))
                check_input(os.fspath(item), name, free_text=dest in FREE_TEXT_ARGUMENTS)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    # Text the tool did not write (a path, a name) never stops a print: what cannot be
    # encoded is written as an escape.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            sys.stdout.flush()  # --help and --version have printed: a closed pipe fails here
            raise
        return _run(args)
    except BrokenPipeError:
        # The reader of our output went away (`cj-health ack --list | head -1`): nothing is
        # wrong with the command; say nothing more, and keep the interpreter's final flush
        # from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _run(args: argparse.Namespace) -> int:
    # python_fix logs for the service's log pipeline; here its refusals and rollbacks reach
    # the operator as the command's one error line, not as extra lines on stderr.
    service_log = logging.getLogger("python_fix")
    if not service_log.handlers:
        service_log.addHandler(logging.NullHandler())
    # SIGTERM (a scheduler stopping us) ends the command like Ctrl-C: `finally` blocks run,
    # temporary folders go, a running dbt is stopped first (cj_health.dbt_runner).
    signal.signal(signal.SIGTERM, _terminate)
    try:
        check_arguments(args)
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe fails here, inside main, not at interpreter exit
        return code
    except CjHealthError as exc:
        _error(str(exc))
        return exc.exit_code
    except psycopg.Error as exc:
        # Every write is one transaction: what was not committed is rolled back.
        _error(describe(exc))
        return EXIT_USAGE
    except UnicodeError as exc:
        _error(f"a value is not valid UTF-8 text ({type(exc).__name__})")
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cj-health: interrupted", file=sys.stderr)
        return 130


def _error(message: str) -> None:
    """The one error line, any control character (a line break too) escaped."""
    print(f"cj-health: {escape(message.strip() or 'unknown error')}", file=sys.stderr)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
