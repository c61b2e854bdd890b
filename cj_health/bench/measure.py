"""The timed figures of `cj-health bench`, each measured against something in the same run.

- refresh: the full refresh as `cj-health refresh --full` runs it (every batch's stored facts
  recomputed, then REFRESH MATERIALIZED VIEW CONCURRENTLY of cj_batch_health), interleaved with
- the lower bound: one aggregate scan of each source table grouped by batch (what the view
  needs, without joining, deciding or writing), run as EXPLAIN ANALYZE so that the server
  computes every aggregate and sends no rows;
- the alert query Grafana's stuck-finalization rule runs: p50 and p99 latency;
- the view's size after each refresh: its growth over the repeated refreshes;
- the steady-state refresh: `cj-health refresh` (only the changed batches' facts recomputed)
  after 1 % of the batches had new activity;
- the longest wait of a reader of the view while a concurrent refresh runs;
- finalize_scoring on one big batch, and the share of it that the BT fit takes.

Wall-clock times on a held connection (time.perf_counter), so connection set-up is never in a
figure. No figure here is asserted anywhere: speed lives only in the report.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from cj_health.batch_facts import FACTS_VIEW, FactsUpdate
from cj_health.db import Database, connect, monitoring_schema
from cj_health.db import source_schema as source_schema_name
from cj_health.errors import CjHealthError
from cj_health.monitoring_tables import HEALTH_VIEW

STUCK_RULE_UID = "cj-stuck-finalization"
READER_SQL = "select count(*) from {} where is_alerting"
FIT_REPEAT = 3

# One aggregate scan per source table, grouped by batch: the facts the health view reads.
# Joins between tables (e.g. "is this projection's essay an anchor?") are the view's own work
# and not part of the bound.
LOWER_BOUND_QUERIES: dict[str, str] = {
    "cj_batch_uploads": """
        select id, status, bos_batch_id, event_correlation_id, expected_essay_count,
               created_at, updated_at, completed_at
        from cj_batch_uploads""",
    "cj_batch_states": """
        select batch_id, state, total_comparisons, submitted_comparisons,
               completed_comparisons, failed_comparisons, partial_scoring_triggered,
               last_activity_at
        from cj_batch_states""",
    "cj_processed_essays": """
        select cj_batch_id, count(*), count(*) filter (where is_anchor),
               count(*) filter (where lower(processing_metadata ->> 'is_anchor') = 'true'),
               count(*) filter (where current_bt_score is not null),
               max(current_bt_se), stddev_samp(current_bt_score)
        from cj_processed_essays group by cj_batch_id""",
    "cj_comparison_pairs": """
        select cj_batch_id, count(*),
               count(*) filter (where winner in ('essay_a', 'essay_b')),
               count(*) filter (where winner = 'error'),
               count(*) filter (where winner is null),
               max(completed_at)
        from cj_comparison_pairs group by cj_batch_id""",
    "grade_projections": """
        select cj_batch_id, count(*), max(created_at)
        from grade_projections group by cj_batch_id""",
    "event_outbox": """
        select aggregate_type, aggregate_id, count(*),
               count(*) filter (where published_at is null),
               max(event_data ->> 'correlation_id')
        from event_outbox group by aggregate_type, aggregate_id""",
}


@dataclass
class Interleaved:
    """The refresh and the lower bound, run in turns so both see the same machine."""

    refresh_seconds: list[float] = field(default_factory=list)
    bound_seconds: list[float] = field(default_factory=list)
    bound_by_table: dict[str, list[float]] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)  # the refresh session's settings
    view_bytes: list[int] = field(default_factory=list)  # after the warm-up, then each refresh

    @property
    def refresh_median(self) -> float:
        return statistics.median(self.refresh_seconds)

    @property
    def bound_median(self) -> float:
        return statistics.median(self.bound_seconds)


@dataclass(frozen=True)
class Latencies:
    seconds: list[float]

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile (p in 0..100)."""
        ordered = sorted(self.seconds)
        rank = max(1, min(len(ordered), math.ceil(p / 100.0 * len(ordered))))
        return ordered[rank - 1]


@dataclass(frozen=True)
class ReaderWait:
    max_seconds: float
    reads_during_refresh: int
    refresh_seconds: float
    idle_max_seconds: float  # the same reader with no refresh running, for scale


@dataclass(frozen=True)
class FinalizerTiming:
    cj_batch_id: int
    essays: int
    comparisons: int
    seconds: float
    bt_fit_seconds: float
    outcome: str
    step_seconds: dict[str, float]  # the finalizer's steps (its step_hook), cumulative

    @property
    def bt_fit_share(self) -> float:
        return self.bt_fit_seconds / self.seconds if self.seconds else 0.0


def health_view() -> sql.Composed:
    return sql.Identifier(monitoring_schema(), HEALTH_VIEW)


def timed_refresh(conn: psycopg.Connection, *, full: bool) -> float:
    """Seconds of one refresh as `cj-health refresh` runs it (cj_health.build: the stored
    facts, then both materialized views, in one transaction); `full` recomputes every
    batch's facts, else only those of batches whose rows changed."""
    return timed_refresh_facts(conn, full=full)[0]


def timed_refresh_facts(conn: psycopg.Connection, *, full: bool) -> tuple[float, FactsUpdate]:
    """timed_refresh, with what the stored facts' update did."""
    from cj_health.build import refresh_in_transaction

    started = time.perf_counter()
    facts = refresh_in_transaction(conn, full=full)
    return time.perf_counter() - started, facts


def apply_refresh_settings(conn: psycopg.Connection) -> dict[str, str]:
    """The session settings `cj-health refresh` runs the refresh with (cj_health.build:
    dbt var `cj_refresh_settings`, e.g. JIT off and a larger work_mem), for this session."""
    from cj_health.settings import refresh_settings

    settings = refresh_settings(conn)
    for name, value in settings.items():
        conn.execute("select set_config(%s, %s, false)", (name, value))
    return settings


def _timed(conn: psycopg.Connection, statement) -> float:
    started = time.perf_counter()
    conn.execute(statement)
    return time.perf_counter() - started


def _set_source_path(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(source_schema_name())))


def lower_bound_once(conn: psycopg.Connection) -> dict[str, float]:
    """Each table's aggregate scan once; seconds per table."""
    times = {}
    for table, query in LOWER_BOUND_QUERIES.items():
        statement = "explain (analyze, timing off, costs off) " + query
        times[table] = _timed(conn, statement)
    return times


def refresh_and_bound(database: Database, repeat: int) -> Interleaved:
    """`repeat` refreshes and `repeat` lower-bound passes, alternating, after one warm-up
    of each (its times are dropped: the first pass reads the tables into the cache). Both run
    in one session with the refresh's session settings, so they see the same conditions."""
    result = Interleaved(bound_by_table={table: [] for table in LOWER_BOUND_QUERIES})
    with connect(database, autocommit=True) as conn:
        _set_source_path(conn)
        result.settings = apply_refresh_settings(conn)
        timed_refresh(conn, full=True)
        result.view_bytes.append(view_size(conn))
        lower_bound_once(conn)
        for _ in range(repeat):
            result.refresh_seconds.append(timed_refresh(conn, full=True))
            result.view_bytes.append(view_size(conn))
            per_table = lower_bound_once(conn)
            result.bound_seconds.append(sum(per_table.values()))
            for table, seconds in per_table.items():
                result.bound_by_table[table].append(seconds)
    return result


def view_size(conn: psycopg.Connection) -> int:
    """Bytes of the health view with its indexes (pg_total_relation_size)."""
    return conn.execute(
        "select pg_total_relation_size(%s::regclass)", (health_view().as_string(conn),)
    ).fetchone()[0]


# New activity on the batches whose id is `slot` modulo 100 (1 % of them), faulty batches
# left alone (their faults must stay visible): the state moves (last_activity_at), one pair
# per batch completes (a pending one where there is one) and one projection per batch is
# written again (created_at).
ACTIVITY_STATEMENTS: tuple[str, ...] = (
    """update cj_batch_states set last_activity_at = now()
       where mod(batch_id, 100) = %(slot)s and batch_id <> all(%(faulty)s)""",
    """update cj_comparison_pairs set winner = coalesce(winner, 'essay_a'), completed_at = now()
       where id in (
           select distinct on (cj_batch_id) id from cj_comparison_pairs
           where mod(cj_batch_id, 100) = %(slot)s and cj_batch_id <> all(%(faulty)s)
           order by cj_batch_id, (winner is null) desc, id
       )""",
    """update grade_projections set created_at = now()
       where (cj_batch_id, els_essay_id) in (
           select distinct on (cj_batch_id) cj_batch_id, els_essay_id from grade_projections
           where mod(cj_batch_id, 100) = %(slot)s and cj_batch_id <> all(%(faulty)s)
           order by cj_batch_id, els_essay_id
       )""",
)


@dataclass
class SteadyRefresh:
    """Refreshes that each follow new activity on 1 % of the batches."""

    changed_batches: list[int] = field(default_factory=list)
    refresh_seconds: list[float] = field(default_factory=list)
    recomputed_batches: list[int] = field(default_factory=list)  # by each refresh
    found_by: list[str] = field(default_factory=list)  # how each refresh found them
    bound_seconds: list[float] = field(default_factory=list)  # a bound pass after each

    @property
    def refresh_median(self) -> float:
        return statistics.median(self.refresh_seconds)

    @property
    def bound_median(self) -> float:
        return statistics.median(self.bound_seconds)


def activity_slot(run: int) -> int:
    """The residue modulo 100 of the batch ids that get new activity before run `run`."""
    return (run * 37 + 11) % 100


def add_activity(conn: psycopg.Connection, slot: int, faulty: list[int]) -> int:
    """Give 1 % of the batches new activity (ACTIVITY_STATEMENTS), none of `faulty`; the
    number of batches."""
    params = {"slot": slot, "faulty": faulty}
    with conn.transaction():
        for statement in ACTIVITY_STATEMENTS:
            conn.execute(statement, params)
    return conn.execute(
        "select count(*) from cj_batch_uploads"
        " where mod(id, 100) = %(slot)s and id <> all(%(faulty)s)",
        params,
    ).fetchone()[0]


def steady_refresh(
    database: Database, repeat: int, faulty: list[int], *, first_run: int = 0
) -> SteadyRefresh:
    """`repeat` refreshes, each after new activity on a different 1 % of the batches (the
    `faulty` ones left alone); `first_run` picks the first of those 1 % slices. A lower-bound
    pass follows each refresh in the same session, as in refresh_and_bound, so that the
    ratio compares runs made under the same conditions."""
    result = SteadyRefresh()
    with connect(database, autocommit=True) as conn:
        _set_source_path(conn)
        apply_refresh_settings(conn)
        for run in range(first_run, first_run + repeat):
            result.changed_batches.append(add_activity(conn, activity_slot(run), faulty))
            seconds, facts = timed_refresh_facts(conn, full=False)
            result.refresh_seconds.append(seconds)
            result.recomputed_batches.append(facts.recomputed)
            result.found_by.append(facts.found_by or f"{facts.mode} ({facts.reason})")
            result.bound_seconds.append(sum(lower_bound_once(conn).values()))
    return result


def install_change_feed(database: Database) -> None:
    """Install the change feed (cj_health.change_feed) and run the one refresh that still
    reads the service tables, so the next refreshes take their changes from the feed."""
    from cj_health import change_feed

    with connect(database, autocommit=True) as conn:
        change_feed.install(conn)
    settle(database)


def remove_change_feed(database: Database) -> None:
    from cj_health import change_feed

    with connect(database, autocommit=True) as conn:
        change_feed.remove(conn)


def settle(database: Database) -> None:
    """One untimed refresh: takes what earlier writes left for the next one."""
    with connect(database, autocommit=True) as conn:
        _set_source_path(conn)
        apply_refresh_settings(conn)
        timed_refresh(conn, full=False)


# One comparison callback as the service writes it: the pair's result, then the batch's
# counters and activity time, in one transaction.
CALLBACK_STATEMENTS: tuple[str, ...] = (
    """update cj_comparison_pairs set winner = 'essay_b', completed_at = now()
       where id = %(pair)s""",
    """update cj_batch_states set completed_comparisons = completed_comparisons + 1,
       last_activity_at = now() where batch_id = %(batch)s""",
)


def callback_writes(database: Database, pairs: list[tuple[int, int]]) -> list[float]:
    """Seconds of each callback transaction (CALLBACK_STATEMENTS) over `pairs` (pair id,
    batch id): the service's most frequent write, for the change feed's cost on it."""
    seconds = []
    with connect(database, autocommit=True) as conn:
        _set_source_path(conn)
        for pair, batch in pairs:
            started = time.perf_counter()
            with conn.transaction():
                for statement in CALLBACK_STATEMENTS:
                    conn.execute(statement, {"pair": pair, "batch": batch})
            seconds.append(time.perf_counter() - started)
    return seconds


def callback_pairs(database: Database, count: int, faulty: list[int]) -> list[tuple[int, int]]:
    """Up to `count` pending pairs of healthy batches, spread over the table, for
    callback_writes (a callback completes a pending pair: the counters stay true)."""
    with connect(database) as conn:
        _set_source_path(conn)
        rows = conn.execute(
            "select id, cj_batch_id from cj_comparison_pairs"
            " where winner is null and cj_batch_id <> all(%s)"
            " order by md5(id::text) limit %s",
            (faulty, count),
        ).fetchall()
    return [(int(pair), int(batch)) for pair, batch in rows]


def stuck_alert_query() -> tuple[str, str]:
    """The SQL that Grafana's stuck-finalization rule runs, macros expanded: (source, sql)."""
    from cj_health.bench import grafana_sql

    path = grafana_sql.alert_rules_path()
    if not path.exists():
        raise CjHealthError(f"the Grafana alert rules are missing: {path}")
    queries = grafana_sql.rule_queries(grafana_sql.load_yaml(path))
    matching = [q for q in queries if q.source.startswith(f"rule {STUCK_RULE_UID} ")]
    if not matching:
        raise CjHealthError(f"no alert rule {STUCK_RULE_UID} in {path}")
    now = datetime.now(UTC)
    text = grafana_sql.expand_macros(
        matching[0].raw_sql, time_from=now - timedelta(minutes=10), time_to=now
    )
    return matching[0].source, text


def analyze_health_view(database: Database) -> None:
    """Planner statistics for the freshly built view, as autovacuum would gather them: without
    them the planner takes every other row for alerting."""
    with connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("analyze {}").format(health_view()))


def alert_query_latencies(database: Database, query: str, runs: int) -> Latencies:
    """Run the alert query `runs` times on one connection (after 5 warm-up runs), unprepared
    as Grafana sends it, so each run is planned too. The rule's SQL names no schema: the
    connection's search_path is the monitoring schema, as the role setting of Grafana's login
    makes it."""
    from cj_health.bench import grafana_sql

    with connect(database, autocommit=True) as conn:
        conn.prepare_threshold = None
        conn.execute(grafana_sql.search_path_statement(monitoring_schema()))
        for _ in range(5):
            conn.execute(query).fetchall()
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            conn.execute(query).fetchall()
            seconds.append(time.perf_counter() - started)
    return Latencies(seconds)


def reader_wait(database: Database, idle_reads: int = 50) -> ReaderWait:
    """A reader loops over the view on its own connection while another connection runs
    REFRESH ... CONCURRENTLY; the longest single read is the wait a dashboard would see."""
    reader_sql = sql.SQL(READER_SQL).format(health_view())
    with (
        connect(database, autocommit=True) as reader,
        connect(database, autocommit=True) as refresher,
    ):
        reader.prepare_threshold = None
        apply_refresh_settings(refresher)
        idle = []
        for _ in range(idle_reads):
            idle.append(_timed(reader, reader_sql))
        done = threading.Event()
        refresh_time: list[float] = []
        failure: list[BaseException] = []

        def refresh() -> None:
            try:
                refresh_time.append(timed_refresh(refresher, full=True))
            except BaseException as exc:  # re-raised in the main thread
                failure.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=refresh, name="cj-bench-refresh")
        waits = []
        thread.start()
        while not done.is_set():
            waits.append(_timed(reader, reader_sql))
        thread.join()
        if failure:
            raise failure[0]
    return ReaderWait(
        max_seconds=max(waits) if waits else 0.0,
        reads_during_refresh=len(waits),
        refresh_seconds=refresh_time[0],
        idle_max_seconds=max(idle),
    )


def finalize_timing(database: Database, cj_batch_id: int) -> FinalizerTiming:
    """Time BatchFinalizer.finalize_scoring on the batch, then time the BT fit alone on the
    same essays and outcomes (read back from the service tables) in the same run: the fastest
    of FIT_REPEAT fits, since a busy machine only ever makes a run slower."""
    from cj_health.service_adapter import SyncBatchFinalizer
    from python_fix import scoring

    marks: dict[str, float] = {}
    finalizer = SyncBatchFinalizer(
        database.url, step_hook=lambda step: marks.setdefault(step, time.perf_counter())
    )
    started = time.perf_counter()
    result = finalizer.finalize_scoring(cj_batch_id, source="cj-health bench")
    seconds = time.perf_counter() - started

    with connect(database) as conn:
        _set_source_path(conn)
        essay_ids = [
            row[0]
            for row in conn.execute(
                "select els_essay_id from cj_processed_essays where cj_batch_id = %s "
                "order by els_essay_id",
                (cj_batch_id,),
            )
        ]
        outcomes = conn.execute(
            "select case when winner = 'essay_a' then essay_a_els_id else essay_b_els_id end,"
            " case when winner = 'essay_a' then essay_b_els_id else essay_a_els_id end"
            " from cj_comparison_pairs where cj_batch_id = %s"
            " and winner in ('essay_a', 'essay_b') order by id",
            (cj_batch_id,),
        ).fetchall()
    fits = []
    for _ in range(FIT_REPEAT):  # the fastest of a few, as timeit does: noise only adds
        fit_started = time.perf_counter()
        scoring.fit_bradley_terry(essay_ids, [(w, lo) for w, lo in outcomes])
        fits.append(time.perf_counter() - fit_started)
    bt_fit_seconds = min(fits)
    return FinalizerTiming(
        cj_batch_id=cj_batch_id,
        essays=len(essay_ids),
        comparisons=len(outcomes),
        seconds=seconds,
        bt_fit_seconds=bt_fit_seconds,
        outcome=result.outcome,
        step_seconds={step: mark - started for step, mark in marks.items()},
    )


def explain_refresh_query(database: Database) -> dict[str, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the two queries of a full refresh, for
    docs/performance.md when a target is missed: every batch's facts computed from the
    service tables (`batch_facts`, what `refresh --full` recomputes) and the health view's
    own query over the stored facts (`health_view`, what every refresh runs)."""
    with connect(database, autocommit=True) as conn:
        definition = conn.execute(
            "select definition from pg_matviews where schemaname = %s and matviewname = %s",
            (monitoring_schema(), HEALTH_VIEW),
        ).fetchone()
        if definition is None:
            raise CjHealthError(f"{monitoring_schema()}.{HEALTH_VIEW} does not exist")
        apply_refresh_settings(conn)
        queries = {
            "batch_facts": sql.SQL("select * from {}").format(
                sql.Identifier(monitoring_schema(), FACTS_VIEW)
            ),
            "health_view": sql.SQL(definition[0].rstrip().rstrip(";")),
        }
        plans = {}
        for name, query in queries.items():
            rows = conn.execute(sql.SQL("explain (analyze, buffers) ") + query).fetchall()
            plans[name] = "\n".join(row[0] for row in rows)
    return plans
