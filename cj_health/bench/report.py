"""The bench report: the figures against the issue's targets, as a table and as JSON.

JSON layout (schema_version 1): `batches`, `machine`, `generated` (row counts), `figures`
(raw measurements), `ratios`, and `targets`: one entry per target with its `value`, `limit`,
`met` (null when a single run cannot tell, e.g. growth from 1k to 100k batches).
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Target:
    key: str  # the figure's name in `ratios` or `figures`
    label: str
    unit: str
    limit: float
    at_most: bool  # True: value <= limit; False: value >= limit
    applies_from_batches: int = 0  # the issue states it at this size (1 for every size)


TARGETS: tuple[Target, ...] = (
    Target("refresh_over_lower_bound", "refresh / lower bound", "x", 2.0, True),
    # The peer derives every batch's health from the service tables, as the every-minute
    # refresh delivers it; the hourly full rebuild is reported beside it.
    Target(
        "naive_peer_over_steady_refresh", "naive peer / every-minute refresh", "x", 20.0, False,
        10_000,
    ),
    Target("alert_query_p99_ms", "alert query p99", "ms", 5.0, True),
    Target("reader_wait_max_ms", "reader wait during refresh", "ms", 50.0, True),
    Target("view_size_growth", "view size: last / first refresh", "x", 1.2, True),
    Target(
        "steady_refresh_over_lower_bound", "refresh after 1 % active / lower bound", "x", 0.5,
        True,
    ),
    Target("finalize_scoring_s", "finalize_scoring 200 essays / 4000 pairs", "s", 2.0, True),
)
GROWTH_TARGET = 1.3  # refresh time per batch from 1k to 100k batches: compare two reports


def machine_facts(server_version: str, server_settings: dict[str, str], embedded: bool) -> dict:
    return {
        "nproc": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": server_version,
        "postgresql_server": "embedded" if embedded else "external (CJ_DATABASE_URL)",
        "postgresql_settings": server_settings,
        # BLAS threads decide the BT fit's speed on a busy machine (docs/performance.md)
        "blas_threads_env": {
            name: os.environ.get(name)
            for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
        },
    }


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        return None
    return None


def evaluate_targets(batches: int, values: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for target in TARGETS:
        value = values.get(target.key)
        met = None
        if value is not None:
            met = value <= target.limit if target.at_most else value >= target.limit
        rows.append({
            "figure": target.key,
            "label": target.label,
            "value": None if value is None else round(value, 4),
            "unit": target.unit,
            "limit": ("<= " if target.at_most else ">= ") + f"{target.limit:g}",
            "stated_at_batches": target.applies_from_batches or None,
            "met": met,
            "applies_here": batches >= target.applies_from_batches,
        })
    return rows


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)  # never a half-written report


def render_table(report: dict[str, Any]) -> str:
    f, r = report["figures"], report["ratios"]
    g = report["generated"]
    peer = f["naive_peer"]
    peer_note = (
        f"{peer['batches_run']} of {report['batches']} batches run, extrapolated"
        if peer["extrapolated"] else f"{peer['batches_run']} batches"
    )
    lines = [
        f"cj-health bench: {report['batches']} batches "
        f"({g['essays']} essays, {g['comparison_pairs']} pairs, {g['faulty_batches']} faulty)"
        f" on PostgreSQL {report['machine']['postgresql']}, {report['machine']['nproc']} CPUs",
        "",
        f"{'figure':<44}{'value':>14}  note",
        f"{'-' * 44}{'-' * 14}  {'-' * 30}",
        _row("refresh concurrently (median)", f["refresh"]["median_ms"], "ms",
             f"{f['refresh']['per_batch_us']:.2f} us/batch, {f['refresh']['runs']} runs"),
        _row("lower bound: aggregate scans (median)", f["lower_bound"]["median_ms"], "ms",
             "one grouped scan per source table"),
        _row("refresh / lower bound", r["refresh_over_lower_bound"], "x", ""),
        _row("view size growth over the refreshes", f["view_size"]["growth"], "x",
             f"{f['view_size']['first_bytes'] / 1e6:.1f} -> "
             f"{f['view_size']['last_bytes'] / 1e6:.1f} MB"),
        _row("refresh after 1 % active (median)", f["steady_refresh"]["median_ms"], "ms",
             f"{f['steady_refresh']['changed_batches']:g} batches changed; "
             f"{f['steady_refresh']['ratio_to_lower_bound']:.2f} x lower bound "
             f"({f['steady_refresh']['lower_bound_median_ms']:.0f} ms, alternating); "
             "change feed"),
        _row("  the same without the change feed", f["steady_refresh_without_feed"]["median_ms"],
             "ms", f"{f['steady_refresh_without_feed']['ratio_to_lower_bound']:.2f} x lower "
             "bound; reads the service tables"),
        *_write_cost_rows(f.get("change_feed_write_cost")),
        _row("naive peer (inspect per batch)", peer["seconds"] * 1000.0, "ms",
             f"{peer['per_batch_ms']:.3f} ms/batch; {peer_note}"),
        _row("naive peer / every-minute refresh", r["naive_peer_over_steady_refresh"], "x",
             f"{r['naive_peer_over_refresh']:.1f} x the full refresh"),
        _row("alert query p50", f["alert_query"]["p50_ms"], "ms",
             f"{f['alert_query']['runs']} runs"),
        _row("alert query p99", f["alert_query"]["p99_ms"], "ms", ""),
        _row("reader wait during refresh (max)", f["reader_wait"]["max_ms"], "ms",
             f"{f['reader_wait']['reads_during_refresh']} reads; idle max "
             f"{f['reader_wait']['idle_max_ms']:.2f} ms"),
        _row("finalize_scoring (median)", f["finalize_scoring"]["seconds"], "s",
             f"{f['finalize_scoring']['essays']} essays, "
             f"{f['finalize_scoring']['comparisons']} pairs, "
             f"{f['finalize_scoring']['runs']} batches"),
        _row("  share in the BT fit", 100.0 * f["finalize_scoring"]["bt_fit_share"], "%",
             f"fit alone {f['finalize_scoring']['bt_fit_seconds'] * 1000.0:.1f} ms"),
        "",
        f"{'target':<44}{'value':>14}  {'limit':<10}result",
    ]
    for t in report["targets"]:
        verdict = {None: "n/a", True: "met", False: "MISSED"}[t["met"]]
        if not t["applies_here"]:
            verdict += f" (stated at {t['stated_at_batches']} batches)"
        value = "-" if t["value"] is None else f"{t['value']:.3f} {t['unit']}"
        lines.append(f"{t['label']:<44}{value:>14}  {t['limit']:<10}{verdict}")
    lines.append(
        f"{'refresh per batch, 1k -> 100k batches':<44}{'':>14}  "
        f"{'<= ' + format(GROWTH_TARGET, 'g'):<10}compare two reports (docs/performance.md)"
    )
    return "\n".join(lines)


def _write_cost_rows(cost: dict[str, Any] | None) -> list[str]:
    if cost is None:
        return ["callback write with the change feed              -  no pending pair to complete"]
    return [
        _row("callback write with the change feed", cost["callback_median_ms_with_feed"], "ms",
             f"{cost['ratio']:.2f} x without ({cost['callback_median_ms_without_feed']:.3f} ms);"
             f" {cost['transactions_each']} transactions each"),
    ]


def _row(label: str, value: float, unit: str, note: str) -> str:
    return f"{label:<44}{value:>11.3f} {unit:<2}  {note}"
