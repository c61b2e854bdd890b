"""`cj-health eng5 reset|register-anchors|execute|finalize|replay-incident`: the ENG5 dev data
(cj_health.eng5): the runner, and a batch broken like a fault of the catalogue
(cj_health.eng5.faults, cj_health.eng5.replay).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cj_health.eng5.anchors import DEV_ASSIGNMENT_ID, DEV_COURSE_ID
from cj_health.guard import dev_only
from cj_health.target import resolve_target


def register(subparsers: argparse._SubParsersAction) -> None:
    eng5 = subparsers.add_parser(
        "eng5", help="ENG5 dev runner: reset, register anchors, execute a batch end to end"
    )
    actions = eng5.add_subparsers(dest="eng5_command", required=True, metavar="ACTION")

    reset = actions.add_parser(
        "reset",
        help="empty the CJ tables of a dev/test database (refuses anywhere else, exit 3)",
        description="Empty the CJ tables, or drop and recreate them with --drop. Allowed on "
        "the embedded server, on databases named *_dev or *_test, or with CJ_ENVIRONMENT=dev|"
        "test; always refused with CJ_ENVIRONMENT=staging|production.",
    )
    reset.add_argument(
        "--drop", action="store_true", help="drop and recreate the tables instead of emptying"
    )
    reset.set_defaults(handler=cmd_reset)

    anchors = actions.add_parser(
        "register-anchors", help="upsert the 12 ENG5 anchor references for an assignment"
    )
    anchors.add_argument("--assignment-id", default=DEV_ASSIGNMENT_ID)
    anchors.set_defaults(handler=cmd_register_anchors)

    execute = actions.add_parser(
        "execute",
        help="create one ENG5 batch end to end (mock LLM judge) and finalize it",
        description="Create a batch through python_fix: the upload, 12 anchors and generated "
        "students, comparisons judged by a seeded mock LLM judge, the callbacks, then "
        "BatchFinalizer.finalize_scoring. Writes assessment_run.execute.json.",
    )
    execute.add_argument("--assignment-id", default=DEV_ASSIGNMENT_ID)
    execute.add_argument("--course-id", default=DEV_COURSE_ID)
    execute.add_argument(
        "--batch-id", dest="bos_batch_id", help="the BOS batch id (default: a new uuid)"
    )
    execute.add_argument(
        "--students", type=int, default=12, help="student essays to generate (default 12)"
    )
    execute.add_argument(
        "--max-comparisons",
        type=int,
        help="comparison budget (default: 20 per essay, at most every distinct pair)",
    )
    execute.add_argument(
        "--seed", type=_non_negative, default=0,
        help="seeds essay qualities and judge noise (default 0)"
    )
    execute.add_argument(
        "--out-dir",
        type=Path,
        help="artefact folder (default .cj-health/runs/<bos batch id>/)",
    )
    execute.set_defaults(handler=cmd_execute)

    finalize = actions.add_parser(
        "finalize",
        help="finish a dev batch a stopped `execute` left behind (finalizer, then relay)",
        description="Run BatchFinalizer.finalize_scoring on a batch, then mark its outbox rows "
        "published as the relay would. Completes a batch that an interrupted `eng5 execute` "
        "left WAITING_CALLBACKS or SCORING; on a COMPLETED batch it only publishes leftover "
        "events. Dev and test databases only.",
    )
    finalize.add_argument("cj_batch_id", metavar="CJ_BATCH_ID")
    finalize.set_defaults(handler=cmd_finalize)

    register_replay_incident(actions)


def _non_negative(text: str) -> int:
    """An argparse type: a whole number >= 0 (the seed of numpy's generator)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def cmd_reset(args: argparse.Namespace) -> int:
    from cj_health.eng5.reset import reset

    print(reset(resolve_target().database, drop=args.drop).summary())
    return 0


def cmd_register_anchors(args: argparse.Namespace) -> int:
    from cj_health.eng5.anchors import GRADE_SCALE, register_anchors

    database = dev_only(resolve_target(), "register anchors in").database
    count = register_anchors(database, args.assignment_id)
    print(
        f"{database.display}: {count} ENG5 anchors ({GRADE_SCALE}) registered for assignment "
        f"{args.assignment_id}"
    )
    return 0


def cmd_execute(args: argparse.Namespace) -> int:
    from cj_health.eng5.runner import execute_batch

    result = execute_batch(
        dev_only(resolve_target(), "execute an ENG5 batch in").database,
        assignment_id=args.assignment_id,
        course_id=args.course_id,
        bos_batch_id=args.bos_batch_id,
        students=args.students,
        max_comparisons=args.max_comparisons,
        seed=args.seed,
        out_dir=args.out_dir,
        progress=lambda line: print(line, flush=True),
    )
    print("\n".join(result.summary_lines()))
    return 0


def cmd_finalize(args: argparse.Namespace) -> int:
    from cj_health.eng5.runner import finalize_batch
    from cj_health.inspect import parse_batch_id

    cj_batch_id = parse_batch_id(args.cj_batch_id)
    database = dev_only(resolve_target(), "finalize a batch in").database
    print(finalize_batch(database, cj_batch_id, source="cj-health eng5 finalize").message)
    return 0


# --- replay-incident: the fault catalogue and its replay ----------------------------------

def register_replay_incident(actions: argparse._SubParsersAction) -> None:
    from cj_health.eng5.faults import FAULTS  # plain SQL functions: cheap to import
    replay = actions.add_parser(
        "replay-incident",
        help="add a batch broken the way a catalogued fault breaks it (default: Batch 20)",
        description="Add one batch broken like a fault of the catalogue (cj_health.eng5.faults), "
        "so the monitoring fires. The default, batch20_wedge, replays the Batch 20 incident "
        "with its counts: COMPLETE_STABLE + WAITING_CALLBACKS, 5/5 comparisons, no "
        "projections, 18 essays of which 15 anchors by metadata with every is_anchor false. "
        "Other faults execute a healthy ENG5 batch and break it.",
    )
    replay.add_argument(
        "fault", nargs="?", default="batch20_wedge", choices=list(FAULTS), metavar="FAULT",
        help="one of: " + ", ".join(FAULTS) + " (default batch20_wedge)",
    )
    replay.add_argument(
        "--seed", type=_non_negative, default=0, help="seeds the generated essays (default 0)"
    )
    replay.set_defaults(handler=cmd_replay_incident)


def cmd_replay_incident(args: argparse.Namespace) -> int:
    from cj_health.eng5.replay import replay_incident

    target = dev_only(resolve_target(), "replay an incident in")
    result = replay_incident(target.database, args.fault, seed=args.seed)
    print("\n".join(result.summary_lines()))
    return 0
