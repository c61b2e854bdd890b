"""`cj-health build` and `cj-health refresh`: the monitoring views (cj_health.build)."""

from __future__ import annotations

import argparse
import sys

from cj_health.errors import CjHealthError


def register(subparsers: argparse._SubParsersAction) -> None:
    build = subparsers.add_parser(
        "build",
        help="build the monitoring views with dbt, then run the dbt tests (invariants)",
        description="Runs the dbt models (the health view is refreshed, or rebuilt when its "
        "definition changed), then every dbt test. Exit 0: all tests pass; 1: the data breaks "
        "an invariant (failing rows stored in <schema>_dbt_test__audit); 2: dbt, a model or "
        "a unit test failed.",
    )
    build.add_argument(
        "--verbose",
        action="store_true",
        help="show dbt's own output as it runs (instead of one line per node), and keep its "
        "target folder, with the compiled SQL it names, until the next run",
    )
    build.set_defaults(handler=cmd_build)
    refresh = subparsers.add_parser(
        "refresh",
        help="refresh cj_batch_health now (REFRESH MATERIALIZED VIEW CONCURRENTLY, no dbt)",
    )
    refresh.add_argument(
        "--full",
        action="store_true",
        help="recompute the stored facts of every batch, not only of the batches whose rows "
        "changed (the periodic full rebuild; docs/scheduling.md)",
    )
    refresh.set_defaults(handler=cmd_refresh)


def cmd_build(args: argparse.Namespace) -> int:
    from cj_health.build import build
    from cj_health.runs import build_summary, recorded_run
    from cj_health.target import resolve_target

    database = resolve_target().database
    print(f"cj-health build: {database.display}", flush=True)
    with recorded_run(database, "build") as run:
        result = build(database, echo=args.verbose, progress=None if args.verbose else _progress)
        denied = result.privilege_error(database.params.get("user"), database.display)
        if denied:  # one line, exit 2, like every command missing a privilege
            raise CjHealthError(denied)
        run.exit_code = result.exit_code
        run.summary = build_summary(result)
    print(result.summary())
    if result.models_ok:
        from cj_health.acknowledgements import accepted_batches, accepted_line

        accepted = accepted_line(accepted_batches(database))
        if accepted:
            print(accepted)
    if args.verbose:
        from cj_health.dbt_runner import kept_work_dir

        print(
            f"cj-health: dbt's compiled SQL and logs: {kept_work_dir()} (kept until the next "
            "run)",
            file=sys.stderr,
        )
    elif result.exit_code == 2:
        print("cj-health: dbt reported errors; rerun with --verbose for its log", file=sys.stderr)
    return result.exit_code


def _progress(line: str) -> None:
    """One line per dbt node as it finishes, on stderr (stdout holds the summary)."""
    print(f"  {line}", file=sys.stderr, flush=True)


def cmd_refresh(args: argparse.Namespace) -> int:
    from cj_health.build import refresh
    from cj_health.runs import recorded_run, refresh_summary
    from cj_health.target import resolve_target

    database = resolve_target().database
    with recorded_run(database, "refresh") as run:
        result = refresh(database, full=args.full)
        run.summary = refresh_summary(result)
    print(result.summary())
    return 0
