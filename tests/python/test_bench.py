"""`cj-health bench`: the generated database has the issue's shape, its faults are the
catalogue's, the naive peer reads the same facts as the view, and the report carries every
figure. Timings are never asserted (they live only in the report)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from cj_health.bench import generate, measure, naive_peer, report
from cj_health.bench.measure import Latencies
from cj_health.bench.run import (
    BENCH_DB_PREFIX,
    BenchOptions,
    create_bench_database,
    drop_bench_database,
    run_bench,
)
from cj_health.cli import main
from cj_health.db import Database, connect, monitoring_schema
from cj_health.eng5.faults import FAULTS
from cj_health.errors import CjHealthError

SMALL_RUN_BATCHES = 60


def _rows(database: Database, query: str, params: tuple = ()) -> list[tuple]:
    with connect(database) as conn:
        return conn.execute(query, params).fetchall()


def _database_exists(admin: Database, name: str) -> bool:
    return bool(_rows(admin, "select 1 from pg_database where datname = %s", (name,)))


# --- the generator -----------------------------------------------------------------------


def test_generated_batches_have_the_issue_shape(cj_db: Database) -> None:
    summary = generate.generate(cj_db, SMALL_RUN_BATCHES, chunk_batches=25)

    assert summary.batches == SMALL_RUN_BATCHES
    assert sum(summary.profiles.values()) == SMALL_RUN_BATCHES
    per_batch = _rows(
        cj_db,
        "select u.id, s.state::text, count(e.*),"
        " count(e.*) filter (where e.processing_metadata ->> 'is_anchor' = 'true'),"
        " (select count(*) from cj_comparison_pairs p where p.cj_batch_id = u.id),"
        " (select count(*) from grade_projections g where g.cj_batch_id = u.id)"
        " from cj_batch_uploads u join cj_batch_states s on s.batch_id = u.id"
        " join cj_processed_essays e on e.cj_batch_id = u.id group by u.id, s.state",
    )
    assert len(per_batch) == SMALL_RUN_BATCHES  # every batch has a state and essays
    for cj_batch_id, state, essays, anchors, pairs, projections in per_batch:
        assert 10 <= essays <= 40, cj_batch_id
        assert abs(anchors - essays / 4) <= 0.5, cj_batch_id  # a quarter are anchors
        if state == "COMPLETED":
            assert pairs == round(essays * generate.PAIRS_PER_ESSAY), cj_batch_id
            assert projections >= essays - anchors - 1, cj_batch_id
        else:
            assert projections == 0, cj_batch_id
    anchor_ids = _rows(
        cj_db,
        "select count(*) filter (where els_essay_id ~ '^ANCHOR_[0-9]+_[0-9a-f]{8}$'), count(*)"
        " from cj_processed_essays where processing_metadata ->> 'is_anchor' = 'true'",
    )[0]
    assert anchor_ids[0] == anchor_ids[1] > 0  # ANCHOR_<ref id>_<8 hex>, as production
    # about 5 comparisons per essay in completed batches
    (mean_comparisons,) = _rows(
        cj_db,
        "select avg(e.comparison_count) from cj_processed_essays e"
        " join cj_batch_states s on s.batch_id = e.cj_batch_id where s.state = 'COMPLETED'",
    )[0]
    assert 4.5 <= float(mean_comparisons) <= 5.5


def test_generated_faults_are_catalogue_faults_and_a_few_percent() -> None:
    faulty = [p for p in generate.PROFILES if p.fault]
    assert {p.name for p in faulty} <= set(FAULTS)
    assert 10 <= sum(p.per_mille for p in faulty) <= 50  # a few percent of the batches


def test_anchor_flags_lost_only_where_the_profile_says(cj_db: Database) -> None:
    summary = generate.generate(cj_db, SMALL_RUN_BATCHES)
    mismatched = {
        row[0]
        for row in _rows(
            cj_db,
            "select distinct cj_batch_id from cj_processed_essays"
            " where (processing_metadata ->> 'is_anchor' = 'true') <> is_anchor",
        )
    }
    assert mismatched == set(summary.faulty_batch_ids.get("anchor_flags_lost", []))


def test_generator_refuses_a_database_that_holds_batches(cj_db: Database) -> None:
    generate.generate(cj_db, 3)
    with pytest.raises(CjHealthError, match="already holds CJ batches"):
        generate.generate(cj_db, 3)
    assert _rows(cj_db, "select count(*) from cj_batch_uploads")[0][0] == 3


def test_finalization_batch_waits_with_every_comparison_done(cj_db: Database) -> None:
    generate.generate(cj_db, 2)
    cj_batch_id = generate.add_finalization_batch(cj_db, essays=40, comparisons=400)
    state, essays, anchors, done = _rows(
        cj_db,
        "select s.state::text,"
        " (select count(*) from cj_processed_essays where cj_batch_id = s.batch_id),"
        " (select count(*) from cj_processed_essays where cj_batch_id = s.batch_id"
        "  and is_anchor),"
        " (select count(*) from cj_comparison_pairs where cj_batch_id = s.batch_id"
        "  and winner in ('essay_a', 'essay_b'))"
        " from cj_batch_states s where s.batch_id = %s",
        (cj_batch_id,),
    )[0]
    assert (state, essays, anchors, done) == ("WAITING_CALLBACKS", 40, 12, 400)


# --- pieces without a database -----------------------------------------------------------


def test_peer_runs_on_every_batch_up_to_10k_and_on_a_sample_above() -> None:
    assert BenchOptions(batches=10_000).peer_batches is None
    assert BenchOptions(batches=100_000).peer_batches == 2_000
    assert BenchOptions(batches=100_000, peer_sample=0).peer_batches is None
    assert BenchOptions(batches=50, peer_sample=7).peer_batches == 7


def test_peer_sample_spreads_over_all_batches() -> None:
    ids = list(range(1, 1001))
    sample = naive_peer.sample_batch_ids(ids, 10)
    assert sample == [1, 101, 201, 301, 401, 501, 601, 701, 801, 901]
    assert naive_peer.sample_batch_ids(ids, None) == ids
    assert naive_peer.sample_batch_ids(ids[:5], 10) == ids[:5]


def test_percentiles_are_nearest_rank() -> None:
    latencies = Latencies([float(i) for i in range(100, 0, -1)])
    assert latencies.percentile(50) == 50.0
    assert latencies.percentile(99) == 99.0
    assert latencies.percentile(100) == 100.0


@pytest.mark.parametrize("argv", [["--batches", "0"], ["--batches", "x"], ["--repeat", "0"]])
def test_cli_rejects_bad_numbers_with_exit_2(argv: list[str], capsys) -> None:
    if argv[0] != "--batches":
        argv = ["--batches", "5", *argv]
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *argv])
    assert exit_info.value.code == 2
    assert "bench" in capsys.readouterr().err


def test_bench_database_is_its_own_and_dropped(admin_db: Database) -> None:
    bench = create_bench_database(admin_db)
    assert bench.dbname.startswith(BENCH_DB_PREFIX)
    assert _database_exists(admin_db, bench.dbname)
    drop_bench_database(admin_db, bench)
    assert not _database_exists(admin_db, bench.dbname)
    with pytest.raises(CjHealthError, match="not a benchmark database"):
        drop_bench_database(admin_db, admin_db.with_dbname("cj_dev"))


# --- one small end-to-end run ------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run(admin_db: Database, tmp_path_factory) -> Iterator[tuple[dict, Database, Path]]:
    """`cj-health bench --batches 60` on the server under test, its database kept for the
    assertions below and dropped afterwards."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    lines: list[str] = []
    options = BenchOptions(
        batches=SMALL_RUN_BATCHES, repeat=2, out=out, keep=True, alert_runs=20,
    )
    result = run_bench(options, server=admin_db, log=lines.append)
    kept = [line.split()[-1] for line in lines if line.startswith("kept the benchmark")]
    bench = admin_db.with_dbname(kept[0])
    try:
        yield result, bench, out
    finally:
        drop_bench_database(admin_db, bench)


def test_report_has_every_figure_and_target(small_run) -> None:
    result, _, _ = small_run
    figures = result["figures"]
    for key, fields in {
        "refresh": ("median_ms", "per_batch_us"),
        "lower_bound": ("median_ms", "median_ms_by_table"),
        "naive_peer": ("seconds", "per_batch_ms"),
        "alert_query": ("p50_ms", "p99_ms"),
        "reader_wait": ("max_ms", "reads_during_refresh"),
        "finalize_scoring": ("seconds", "bt_fit_seconds", "bt_fit_share"),
        "view_size": ("first_bytes", "last_bytes", "growth"),
        "steady_refresh": (
            "changed_batches", "median_ms", "lower_bound_median_ms", "ratio_to_lower_bound",
            "ratio_to_full_phase_lower_bound",
        ),
    }.items():
        for name in fields:
            assert figures[key][name] is not None, (key, name)
    assert figures["refresh"]["runs"] == 2
    assert figures["naive_peer"]["batches_run"] == SMALL_RUN_BATCHES
    assert figures["naive_peer"]["queries_run"] == SMALL_RUN_BATCHES * 5
    assert not figures["naive_peer"]["extrapolated"]
    assert figures["alert_query"]["runs"] == 20
    # 1 % of the batches (ids in one residue class modulo 100) get new activity per run
    steady = figures["steady_refresh"]
    faulty = {i for ids in result["generated"]["faulty_batch_ids"].values() for i in ids}

    def active_in(runs: range) -> list[int]:
        return [
            sum(
                1 for i in range(1, SMALL_RUN_BATCHES + 1)
                if i % 100 == measure.activity_slot(run) and i not in faulty
            )
            for run in runs
        ]

    active = active_in(range(2))
    assert steady["runs"] == 2 and steady["changed_batches"] == statistics.median(active)
    # Its ratio is over the lower-bound passes that alternated with it, one per refresh.
    assert len(steady["lower_bound_runs_ms"]) == 2
    assert steady["ratio_to_lower_bound"] == pytest.approx(
        steady["median_ms"] / steady["lower_bound_median_ms"]
    )
    # With the change feed, exactly the active batches are recomputed; reading the service
    # tables finds at least those.
    assert steady["found_by"] == ["change feed"]
    assert steady["recomputed_batches"] == active
    scanning = figures["steady_refresh_without_feed"]
    assert scanning["found_by"] == ["service tables"]
    active_scanning = active_in(range(2, 4))  # its slices follow the feed's
    assert all(
        n >= a for n, a in zip(scanning["recomputed_batches"], active_scanning, strict=True)
    )
    cost = figures["change_feed_write_cost"]
    assert cost is None or cost["ratio"] > 0
    # nothing changed between the repeated refreshes: stable rows keep the view's size
    assert len(figures["view_size"]["bytes_after_each_refresh"]) == 3
    assert figures["view_size"]["growth"] <= 1.2
    assert figures["alert_query"]["rule"].startswith("rule cj-stuck-finalization")
    assert figures["reader_wait"]["reads_during_refresh"] >= 1
    assert set(figures["lower_bound"]["median_ms_by_table"]) == {
        "cj_batch_uploads", "cj_batch_states", "cj_processed_essays", "cj_comparison_pairs",
        "grade_projections", "event_outbox",
    }
    final = figures["finalize_scoring"]
    assert (final["essays"], final["comparisons"]) == (200, 4000)
    assert final["outcomes"] == ["completed"]
    assert final["bt_fit_share"] > 0
    assert {t["figure"] for t in result["targets"]} == {t.key for t in report.TARGETS}
    assert all(isinstance(t["value"], float) for t in result["targets"])
    assert result["generated"]["batches"] == SMALL_RUN_BATCHES
    assert result["machine"]["postgresql"]
    table = report.render_table(result)
    for target in report.TARGETS:
        assert target.label in table


def test_report_json_is_what_the_run_returned(small_run) -> None:
    result, _, out = small_run
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))


def test_generated_faults_show_their_catalogue_code_and_healthy_batches_do_not_alert(
    small_run,
) -> None:
    result, bench, _ = small_run
    faulty = result["generated"]["faulty_batch_ids"]
    view = sql.Identifier(monitoring_schema(), "cj_batch_health")
    with connect(bench) as conn:
        rows = conn.execute(
            sql.SQL("select cj_batch_id, issues, is_alerting from {}").format(view)
        ).fetchall()
    health = {cj_batch_id: (set(issues), alerting) for cj_batch_id, issues, alerting in rows}
    assert set(health) == set(range(1, SMALL_RUN_BATCHES + 1))
    for name, ids in faulty.items():
        for cj_batch_id in ids:
            issues, alerting = health[cj_batch_id]
            assert FAULTS[name].code in issues, (name, cj_batch_id, issues)
            assert alerting, (name, cj_batch_id)
    faulty_ids = {i for ids in faulty.values() for i in ids}
    alerting = {i for i, (_, is_alerting) in health.items() if is_alerting}
    assert alerting - faulty_ids == set()


def test_naive_peer_reads_the_same_facts_as_the_view(small_run) -> None:
    _, bench, _ = small_run
    peer = naive_peer.run_peer(bench, list(range(1, SMALL_RUN_BATCHES + 1)), keep_facts=True)
    view = sql.Identifier(monitoring_schema(), "cj_batch_health")
    with connect(bench) as conn:
        rows = conn.execute(
            sql.SQL(
                "select cj_batch_id, upload_status, cj_state, essay_count, anchor_count,"
                " metadata_anchor_count, pair_count, pairs_completed, projection_count,"
                " outbox_event_count from {} order by cj_batch_id"
            ).format(view)
        ).fetchall()
    from_peer = [
        (f.cj_batch_id, f.upload_status, f.cj_state, f.essays, f.anchors_by_flag,
         f.anchors_by_metadata, f.pairs, f.completed_pairs, f.projections, f.events)
        for f in peer.facts
    ]
    assert peer.queries == SMALL_RUN_BATCHES * naive_peer.QUERIES_PER_BATCH
    assert from_peer == [tuple(row) for row in rows]
