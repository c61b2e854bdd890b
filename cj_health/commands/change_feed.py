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
        "service tables that record which batches each write touched, in the queue "
        "cj_monitoring_feed.cj_batch_changes. With it, `cj-health refresh` reads that queue "
        "instead of every row of the service tables. Installing changes the service's "
        "database: it needs the owner of the service tables, waits at most 5 s for each "
        "table's lock, and is one transaction. See docs/runbook.md.",
    )
    actions = parser.add_subparsers(dest="feed_command", required=True, metavar="ACTION")
    install = actions.add_parser("install", help="install or reinstall the triggers")
    install.add_argument(
        "--refresh-role",
        metavar="ROLE",
        help="the role that runs `cj-health refresh`: granted what the refresh needs on the "
        "feed (default: the owner of the monitoring schema, when it is another role)",
    )
    install.set_defaults(handler=cmd_install)
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
                " tables, with CREATE on the database (for the feed's schema); nothing was"
                " changed"
            ) from None
        except psycopg.errors.UndefinedObject as exc:
            raise CjHealthError(
                f"{exc.diag.message_primary} (--refresh-role?); nothing was changed"
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
    from functools import partial

    from cj_health import change_feed

    state, role, user = _run(partial(_install, refresh_role=args.refresh_role))
    print(state.summary())
    if role:
        print(f"granted {role} what `cj-health refresh` needs on {change_feed.feed_schema()}")
    else:
        print(
            f"`cj-health refresh` must run as {user}, or as a role granted (as {user}):"
        )
        for grant in change_feed.refresh_grants("<refresh role>"):
            print(f"  {grant.as_string(None)};")
    print("the next `cj-health refresh` still reads the service tables once; later ones use it")
    return 0


def _install(conn, refresh_role: str | None):
    from cj_health import change_feed

    role = refresh_role or change_feed.default_refresh_role(conn)
    state = change_feed.install(conn, role)
    (user,) = conn.execute("select current_user").fetchone()
    return state, role, user


def cmd_remove(args: argparse.Namespace) -> int:
    from cj_health import change_feed

    _run(change_feed.remove)
    print("change feed removed: `cj-health refresh` reads the service tables again")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from cj_health import change_feed

    state = _run(change_feed.inspect)
    if args.json:
        print(json.dumps(state.as_dict()))
    else:
        print(state.summary())
    return 1 if state.installed and not state.complete else 0
