"""`cj-health ack` and `cj-health unack`: accept known problems (cj_health.acknowledgements)."""

from __future__ import annotations

import argparse

from cj_health.errors import CjHealthError
from cj_health.inspect import parse_batch_id
from cj_health.target import resolve_target


def register(subparsers: argparse._SubParsersAction) -> None:
    ack = subparsers.add_parser(
        "ack",
        help="acknowledge a batch's problems so they stop alerting (or list acknowledgements)",
        description="Accept known, handled problems: they stop alerting at once (cj_batch_alerts) "
        "and dbt tests and GX checks report them as accepted. Without --issue, the codes the "
        "batch shows now are acknowledged, each on its own: a new problem alerts again. "
        "`--before TIME` accepts every problem of batches created before TIME (once, when the "
        "monitoring is first deployed). `--list` shows every acknowledgement.",
    )
    ack.add_argument("cj_batch_ids", nargs="*", metavar="CJ_BATCH_ID", help="CJ batch ids")
    ack.add_argument("--reason", help="why the problem is accepted (required to acknowledge)")
    ack.add_argument(
        "--issue",
        action="append",
        default=[],
        metavar="CODE",
        help="the problem code to accept (repeatable; default: the codes the batch shows now)",
    )
    ack.add_argument(
        "--until",
        metavar="TIME",
        help="the acknowledgement expires after a duration (8h, 30m, 2d, +8 hours) or at a time"
        " ('2026-03-01 12:00+00')",
    )
    ack.add_argument(
        "--by",
        metavar="NAME",
        help="who acknowledges (default: your login name; the database user when none)",
    )
    ack.add_argument(
        "--before", metavar="TIME", help="acknowledge every problem of batches created before"
    )
    ack.add_argument("--list", action="store_true", help="list the acknowledgements")
    ack.add_argument("--json", action="store_true", help="with --list: machine-readable output")
    ack.set_defaults(handler=cmd_ack)

    unack = subparsers.add_parser(
        "unack",
        help="remove a batch's acknowledgements: its problems alert again at once, and status "
        "and the incidents no longer show them as acknowledged",
    )
    unack.add_argument("cj_batch_id", metavar="CJ_BATCH_ID", help="the CJ batch id")
    unack.add_argument("--issue", metavar="CODE", help="only the acknowledgement of this code")
    unack.set_defaults(handler=cmd_unack)


def cmd_ack(args: argparse.Namespace) -> int:
    from cj_health import acknowledgements

    database = resolve_target().database
    if args.list:
        if args.cj_batch_ids or args.before or args.issue or args.until or args.reason or args.by:
            raise CjHealthError("--list takes no batch ids and no other option than --json")
        listed = acknowledgements.list_acknowledgements(database)
        if args.json:
            print(acknowledgements.to_json(listed))
        else:
            print("\n".join(ack.line() for ack in listed) or "no acknowledgements")
        return 0
    if args.json:
        raise CjHealthError("--json goes with --list")
    if args.before is not None:
        if args.cj_batch_ids or args.issue or args.until:
            raise CjHealthError("--before takes only --reason and --by")
        done = acknowledgements.acknowledge_before(
            database, before=args.before, reason=args.reason or "", by=args.by
        )
    else:
        batch_ids = [parse_batch_id(raw) for raw in args.cj_batch_ids]
        done = acknowledgements.acknowledge(
            database,
            batch_ids,
            reason=args.reason or "",
            codes=args.issue,
            until=args.until,
            by=args.by,
        )
    for ack in done:
        print(f"acknowledged {ack.line()}")
    if not done:
        print("nothing to acknowledge")
    return 0


def cmd_unack(args: argparse.Namespace) -> int:
    from cj_health import acknowledgements

    batch = parse_batch_id(args.cj_batch_id)
    removed = acknowledgements.unacknowledge(resolve_target().database, batch, code=args.issue)
    what = f" of {args.issue}" if args.issue else ""
    print(f"removed {removed} acknowledgement(s){what} of CJ batch {batch}; it alerts again")
    return 0
