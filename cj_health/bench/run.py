"""One `cj-health bench` run, on a database of its own.

It creates `cj_bench_<random>` on the target server (CJ_DATABASE_URL's server, else the
embedded one), applies the CJ schema, generates N batches, builds the dbt models, measures,
writes the JSON report and drops the database (unless asked to keep it). The user's own
database is never written to: it is only the place the CREATE DATABASE is sent from.
"""

from __future__ import annotations

import statistics
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import sql

from cj_health.bench import generate, measure, naive_peer, report
from cj_health.db import Database, connect
from cj_health.dbt_runner import run_dbt
from cj_health.errors import CjHealthError
from cj_health.paths import state_dir
from cj_health.schema import init_schema
from cj_health.target import resolve_target

DEFAULT_REPEAT = 5
DEFAULT_ALERT_RUNS = 1000
PEER_ALL_UP_TO = 10_000  # the peer inspects every batch up to this many batches,
PEER_SAMPLE_ABOVE = 2_000  # and an even sample of this many above (extrapolated)
FINALIZER_ESSAYS = 200
FINALIZER_COMPARISONS = 4000
FINALIZER_RUNS = 3  # batches finalized; medians reported
CALLBACK_BLOCKS = 3  # callback-write blocks without, then with, the change feed
CALLBACK_BLOCK = 200  # callback transactions per block (fewer when fewer pairs are pending)
BENCH_DB_PREFIX = "cj_bench_"
SETTINGS_SHOWN = ("shared_buffers", "work_mem", "max_parallel_workers_per_gather", "jit")

Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchOptions:
    batches: int
    repeat: int = DEFAULT_REPEAT
    out: Path | None = None
    keep: bool = False
    alert_runs: int = DEFAULT_ALERT_RUNS
    peer_sample: int | None = None  # None: the default above; 0: every batch
    explain: bool = False  # also write EXPLAIN (ANALYZE, BUFFERS) of the refresh's queries

    def validate(self) -> None:
        if self.batches < 1:
            raise CjHealthError("--batches must be at least 1")
        if self.repeat < 1:
            raise CjHealthError("--repeat must be at least 1")
        if self.alert_runs < 1:
            raise CjHealthError("--alert-runs must be at least 1")
        if self.peer_sample is not None and self.peer_sample < 0:
            raise CjHealthError("--peer-sample must be 0 (every batch) or more")

    @property
    def peer_batches(self) -> int | None:
        """How many batches the naive peer inspects; None: every batch."""
        if self.peer_sample is None:
            return None if self.batches <= PEER_ALL_UP_TO else PEER_SAMPLE_ABOVE
        return self.peer_sample or None

    @property
    def out_path(self) -> Path:
        return self.out or default_out_path(self.batches)


def default_out_path(batches: int) -> Path:
    return state_dir() / "bench" / f"bench-{batches}.json"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def progress_printer(what: str, log: Log) -> Callable[[int, int], None]:
    """`what done/total` lines; on a terminal they overwrite each other."""
    tty = sys.stderr.isatty()

    def show(done: int, total: int) -> None:
        text = f"  {what} {done}/{total}"
        if tty:
            end = "\n" if done >= total else ""
            print("\r" + text, end=end, file=sys.stderr, flush=True)
        else:
            log(text)

    return show


def create_bench_database(server: Database) -> Database:
    name = f"{BENCH_DB_PREFIX}{uuid.uuid4().hex[:10]}"
    with connect(server, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        except Exception as exc:  # psycopg.Error: privilege missing, server read-only, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CjHealthError(
                f"cannot create the benchmark database on {server.display}: {first}"
            ) from None
    return server.with_dbname(name)


def drop_bench_database(server: Database, bench: Database) -> None:
    if not bench.dbname.startswith(BENCH_DB_PREFIX):  # never drop anything else
        raise CjHealthError(f"refusing to drop {bench.dbname}: not a benchmark database")
    with connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(bench.dbname))
        )


def build_models(database: Database) -> None:
    """dbt seed + run (no tests: the faulty batches would fail them, as they should); run_dbt
    gives each step a target path of its own, so no other dbt run is disturbed."""
    for step in ("seed", "run"):
        result = run_dbt(database, [step])
        if not result.ok:
            lines = [line for line in result.output.splitlines() if line.strip()]
            raise CjHealthError(
                f"dbt {step} failed on {database.display}: {' | '.join(lines[-5:])}"
            )


def run_bench(
    options: BenchOptions, *, server: Database | None = None, log: Log = _stderr
) -> dict[str, Any]:
    """The whole run; returns the report (also written to options.out_path)."""
    options.validate()
    server = server or resolve_target().database  # pinned: dbt reaches the same server
    bench = create_bench_database(server)
    log(f"cj-health bench: database {bench.display}")
    try:
        result = _run_in(bench, options, log)
    finally:
        if options.keep:
            log(f"kept the benchmark database {bench.dbname}")
        else:
            drop_bench_database(server, bench)
    report.write_json(result, options.out_path)
    log(f"wrote {options.out_path}")
    return result


def _run_in(bench: Database, options: BenchOptions, log: Log) -> dict[str, Any]:
    init_schema(bench)
    log(f"generating {options.batches} batches")
    summary = generate.generate(bench, options.batches, progress=progress_printer("batches", log))
    log(f"  {summary.essays} essays, {summary.comparison_pairs} pairs in {summary.seconds:.1f} s")
    log("building the dbt models")
    build_models(bench)

    log(f"refresh and lower bound, {options.repeat} runs each")
    timed = measure.refresh_and_bound(bench, options.repeat)

    faulty = sorted({i for ids in summary.faulty_batch_ids.values() for i in ids})
    # The service's callback write, without and then with the change feed's triggers, in
    # alternating blocks so that both see the same machine.
    callbacks = measure.callback_pairs(bench, CALLBACK_BLOCKS * CALLBACK_BLOCK * 2, faulty)
    log(
        f"steady-state refresh without the change feed: 1 % of the batches active, "
        f"{options.repeat} runs"
    )
    scanning = measure.steady_refresh(bench, options.repeat, faulty, first_run=options.repeat)
    log("callback writes without and with the change feed")
    writes: dict[str, list[float]] = {"without_feed": [], "with_feed": []}
    block = max(1, len(callbacks) // (2 * CALLBACK_BLOCKS))
    for start in range(0, block * 2 * CALLBACK_BLOCKS, 2 * block):
        writes["without_feed"] += measure.callback_writes(bench, callbacks[start : start + block])
        measure.install_change_feed(bench)
        writes["with_feed"] += measure.callback_writes(
            bench, callbacks[start + block : start + 2 * block]
        )
        measure.remove_change_feed(bench)
    measure.install_change_feed(bench)
    measure.settle(bench)
    log(
        f"steady-state refresh with the change feed: 1 % of the batches active, "
        f"{options.repeat} runs"
    )
    steady = measure.steady_refresh(bench, options.repeat, faulty)

    ids = list(range(1, options.batches + 1))
    sample = naive_peer.sample_batch_ids(ids, options.peer_batches)
    log(f"naive peer over {len(sample)} batches")
    peer = naive_peer.run_peer(bench, sample, progress=progress_printer("inspected", log))
    extrapolated = len(sample) < len(ids)
    peer_seconds = peer.seconds * len(ids) / len(sample)

    measure.analyze_health_view(bench)
    rule_source, alert_sql = measure.stuck_alert_query()
    log(f"alert query ({rule_source}), {options.alert_runs} runs")
    alerts = measure.alert_query_latencies(bench, alert_sql, options.alert_runs)

    log("reader wait during a concurrent refresh")
    wait = measure.reader_wait(bench)

    explain_plans = measure.explain_refresh_query(bench) if options.explain else None

    log(
        f"finalize_scoring: {FINALIZER_RUNS} batches of {FINALIZER_ESSAYS} essays, "
        f"{FINALIZER_COMPARISONS} comparisons"
    )
    finals = []
    for _ in range(FINALIZER_RUNS):
        batch_id = generate.add_finalization_batch(
            bench, essays=FINALIZER_ESSAYS, comparisons=FINALIZER_COMPARISONS
        )
        finals.append(measure.finalize_timing(bench, batch_id))
    final_seconds = statistics.median(f.seconds for f in finals)
    fit_seconds = statistics.median(f.bt_fit_seconds for f in finals)

    machine = _machine(bench)
    refresh_median = timed.refresh_median
    figures = {
        "refresh": {
            "runs": len(timed.refresh_seconds),
            "runs_ms": _ms_list(timed.refresh_seconds),
            "median_ms": refresh_median * 1000.0,
            "per_batch_us": refresh_median * 1e6 / options.batches,
            "session_settings": timed.settings,
        },
        "lower_bound": {
            "runs_ms": _ms_list(timed.bound_seconds),
            "median_ms": timed.bound_median * 1000.0,
            "median_ms_by_table": {
                table: statistics.median(values) * 1000.0
                for table, values in timed.bound_by_table.items()
            },
        },
        "view_size": {
            "bytes_after_each_refresh": timed.view_bytes,
            "first_bytes": timed.view_bytes[0],
            "last_bytes": timed.view_bytes[-1],
            "growth": timed.view_bytes[-1] / timed.view_bytes[0],
        },
        "steady_refresh": _steady_figure(steady, timed.bound_median),
        "steady_refresh_without_feed": _steady_figure(scanning, timed.bound_median),
        "change_feed_write_cost": _write_cost(writes),
        "naive_peer": {
            "queries_per_batch": naive_peer.QUERIES_PER_BATCH,
            "batches_run": peer.batches,
            "queries_run": peer.queries,
            "seconds_run": peer.seconds,
            "extrapolated": extrapolated,
            "seconds": peer_seconds,
            "per_batch_ms": peer.per_batch_ms,
            "per_batch_ms_by_query": {
                name: 1000.0 * seconds / peer.batches
                for name, seconds in peer.seconds_by_query.items()
            },
        },
        "alert_query": {
            "rule": rule_source,
            "sql": alert_sql,
            "runs": len(alerts.seconds),
            "p50_ms": alerts.percentile(50) * 1000.0,
            "p99_ms": alerts.percentile(99) * 1000.0,
            "max_ms": max(alerts.seconds) * 1000.0,
        },
        "reader_wait": {
            "max_ms": wait.max_seconds * 1000.0,
            "reads_during_refresh": wait.reads_during_refresh,
            "refresh_ms": wait.refresh_seconds * 1000.0,
            "idle_max_ms": wait.idle_max_seconds * 1000.0,
        },
        "finalize_scoring": {
            "runs": len(finals),
            "cj_batch_ids": [f.cj_batch_id for f in finals],
            "essays": finals[0].essays,
            "comparisons": finals[0].comparisons,
            "outcomes": sorted({f.outcome for f in finals}),
            "runs_s": [round(f.seconds, 4) for f in finals],
            "bt_fit_runs_s": [round(f.bt_fit_seconds, 4) for f in finals],
            "seconds": final_seconds,
            "bt_fit_seconds": fit_seconds,
            "bt_fit_share": fit_seconds / final_seconds,
            "step_seconds_first_run": finals[0].step_seconds,
        },
    }
    ratios = {
        "refresh_over_lower_bound": refresh_median / timed.bound_median,
        "naive_peer_over_refresh": peer_seconds / refresh_median,
        "naive_peer_over_steady_refresh": peer_seconds / steady.refresh_median,
    }
    target_values = {
        **ratios,
        "view_size_growth": figures["view_size"]["growth"],
        "steady_refresh_over_lower_bound": figures["steady_refresh"]["ratio_to_lower_bound"],
        "alert_query_p99_ms": figures["alert_query"]["p99_ms"],
        "reader_wait_max_ms": figures["reader_wait"]["max_ms"],
        "finalize_scoring_s": final_seconds,
    }
    result = {
        "schema_version": report.SCHEMA_VERSION,
        "batches": options.batches,
        "repeat": options.repeat,
        "machine": machine,
        "generated": summary.as_dict(),
        "figures": figures,
        "ratios": ratios,
        "targets": report.evaluate_targets(options.batches, target_values),
    }
    if explain_plans is not None:
        result["explain_refresh_query"] = explain_plans
    return result


def _steady_figure(steady: measure.SteadyRefresh, full_phase_bound: float) -> dict[str, Any]:
    """The every-minute refresh over the lower-bound passes that alternated with it; beside
    it, over the bound of the full-refresh phase (measured earlier in the run)."""
    return {
        "runs": len(steady.refresh_seconds),
        "runs_ms": _ms_list(steady.refresh_seconds),
        "changed_batches": statistics.median(steady.changed_batches),
        "median_ms": steady.refresh_median * 1000.0,
        "lower_bound_median_ms": steady.bound_median * 1000.0,
        "lower_bound_runs_ms": _ms_list(steady.bound_seconds),
        "ratio_to_lower_bound": steady.refresh_median / steady.bound_median,
        "ratio_to_full_phase_lower_bound": steady.refresh_median / full_phase_bound,
        "recomputed_batches": steady.recomputed_batches,
        "found_by": sorted(set(steady.found_by)),
    }


def _write_cost(writes: dict[str, list[float]]) -> dict[str, Any] | None:
    """The callback transaction's median without and with the feed (None: no pending pair
    to complete in this database)."""
    if not writes["without_feed"] or not writes["with_feed"]:
        return None
    without = statistics.median(writes["without_feed"])
    with_feed = statistics.median(writes["with_feed"])
    return {
        "transactions_each": len(writes["with_feed"]),
        "callback_median_ms_without_feed": without * 1000.0,
        "callback_median_ms_with_feed": with_feed * 1000.0,
        "ratio": with_feed / without,
    }


def _ms_list(seconds: list[float]) -> list[float]:
    return [round(s * 1000.0, 3) for s in seconds]


def _machine(database: Database) -> dict[str, Any]:
    with connect(database, autocommit=True) as conn:
        version = conn.execute("show server_version").fetchone()[0]
        settings = {
            name: conn.execute(sql.SQL("show {}").format(sql.Identifier(name))).fetchone()[0]
            for name in SETTINGS_SHOWN
        }
    return report.machine_facts(version, settings, database.embedded)
