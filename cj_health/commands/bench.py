"""`cj-health bench`: generate N batches in a database of its own and measure the refresh,
the alert query, readers during a refresh and the finalizer (docs/performance.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _sample(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (every batch) or more, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the health refresh, alert query and finalizer on synthetic batches",
        description="Create a database of its own on the target server, generate N synthetic "
        "CJ batches, build the monitoring views and measure: the concurrent refresh against "
        "the lower bound (one grouped scan per table) and a naive per-batch peer, the alert "
        "query's p50/p99, a reader's wait during a refresh, and finalize_scoring on a "
        "200-essay batch. Prints a table, writes JSON, drops the database.",
    )
    parser.add_argument("--batches", type=_positive, required=True, metavar="N",
                        help="how many batches to generate")
    parser.add_argument("--out", type=Path, metavar="PATH",
                        help="JSON report (default .cj-health/bench/bench-N.json)")
    parser.add_argument("--repeat", type=_positive, default=5, metavar="K",
                        help="timed refresh / lower-bound runs; the median is reported "
                        "(default 5)")
    parser.add_argument("--alert-runs", type=_positive, default=1000, metavar="R",
                        help="runs of the alert query for p50/p99 (default 1000)")
    parser.add_argument("--peer-sample", type=_sample, default=None, metavar="M",
                        help="run the naive peer on M batches spread evenly and extrapolate "
                        "to all (default: every batch up to 10000 batches, else 2000; "
                        "0: every batch)")
    parser.add_argument("--explain", action="store_true",
                        help="add EXPLAIN (ANALYZE, BUFFERS) of the full refresh's queries "
                        "to the JSON")
    parser.add_argument("--keep", action="store_true",
                        help="keep the benchmark database (its name is printed)")
    parser.set_defaults(handler=cmd_bench)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # run_bench drops its database on the way out


def cmd_bench(args: argparse.Namespace) -> int:
    import signal

    from cj_health.bench.report import render_table
    from cj_health.bench.run import BenchOptions, run_bench

    signal.signal(signal.SIGTERM, _interrupt)

    options = BenchOptions(
        batches=args.batches,
        repeat=args.repeat,
        out=args.out,
        keep=args.keep,
        alert_runs=args.alert_runs,
        peer_sample=args.peer_sample,
        explain=args.explain,
    )
    print(render_table(run_bench(options)))
    return 0
