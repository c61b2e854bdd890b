"""`cj-health change-feed install|remove|status`: the triggers that let the every-minute
refresh find changed batches without reading the service tables (cj_health.change_feed)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "change-feed",
        help="triggers recording which batches the service wrote (faster every-minute refresh)",
        description="Install, remove or show the change feed: statement-level triggers on the "
        "service tables that record which batches each write touched, in the monitoring "
        "schema's cj_batch_changes. With it, `cj-health refresh` reads that queue instead of "
        "every row of the service tables. Installing changes the service's database: it needs "
        "the owner of the service tables, waits at most 5 s for each table's lock, and is one "
        "transaction. See docs/runbook.md.",
    )
    actions = parser.add_subparsers(dest="feed_command", required=True, metavar="ACTION")
    actions.add_parser("install", help="install or reinstall the triggers").set_defaults(
        handler=cmd_install
    )
    actions.add_parser("remove", help="drop the triggers and the queue").set_defaults(
        handler=cmd_remove
    )
    show = actions.add_parser("status", help="which triggers are in place (exit 1: incomplete)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=cmd_status)


def _run(action):
    import psycopg

    from cj_health.db import connect
    from cj_health.errors import CjHealthError
    from cj_health.target import resolve_target

    database = resolve_target().database
    with connect(database, autocommit=True) as conn:
        try:
            return action(conn)
        except psycopg.errors.LockNotAvailable:
            raise CjHealthError(
                "a service table stayed locked by running transactions for 5 s; nothing was"
                " changed, try again"
            ) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise CjHealthError(
                f"not allowed: {exc.diag.message_primary}; run it as the owner of the service"
                " tables; nothing was changed"
            ) from None
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
            raise CjHealthError(
                f"{exc.diag.message_primary}: is CJ_SOURCE_SCHEMA the service's schema?"
                " nothing was changed"
            ) from None
        except psycopg.Error as exc:
            message = exc.diag.message_primary or type(exc).__name__
            raise CjHealthError(f"change feed: {message}; nothing was changed") from None


def cmd_install(args: argparse.Namespace) -> int:
    from cj_health import change_feed

    status = _run(change_feed.install)
    print(status.summary())
    print("the next `cj-health refresh` still reads the service tables once; later ones use it")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from cj_health import change_feed

    _run(change_feed.remove)
    print("change feed removed: `cj-health refresh` reads the service tables again")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from cj_health import change_feed

    status = _run(change_feed.status)
    if args.json:
        print(
            json.dumps(
                {
                    "complete": status.complete,
                    "installed": status.installed,
                    "missing": list(status.missing),
                    "pending": status.pending,
                }
            )
        )
    else:
        print(status.summary())
    return 1 if status.installed and not status.complete else 0
