"""`cj-health demo`: the main job. On the target database (the embedded default), it builds the
whole story: schema, a reseeded ENG5 data set with two healthy batches, the replayed Batch 20
incident, the dbt build, the health view, `inspect` of the incident, and the GX checks.

It exits 0 when the tooling worked, even though the incident batch is unhealthy: finding the
incident is the point. It exits non-zero only when a step of the tooling itself failed.

Its `build`, `refresh` and `check` are recorded in cj_monitoring_runs exactly as the commands
record theirs (cj_health.runs), so `cj-health status` right after the demo shows them. The
reseed removes the acknowledgements and clears the open incidents of the batches it removes
(cj_health.eng5.reset): the new batches reuse their CJ batch ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from psycopg import sql
from psycopg.rows import dict_row

from cj_health.db import Database, connect, monitoring_schema
from cj_health.errors import CjHealthError
from cj_health.monitoring_tables import HEALTH_VIEW
from cj_health.paths import project_dir

HEALTH_COLUMNS = (
    "cj_batch_id",
    "upload_status",
    "cj_state",
    "student_count",
    "anchor_count",
    "metadata_anchor_count",
    "projection_count",
    "health_status",
    "issues",
)

Say = Callable[[str], None]


@dataclass
class DemoResult:
    healthy_batch_ids: list[int]
    incident_batch_id: int
    build_tests_failed: int
    check_exit_code: int
    health_rows: list[dict]


def step(say: Say, number: int, title: str) -> None:
    say("")
    say(f"== {number}. {title}")


def run_demo(database: Database, say: Say = print) -> DemoResult:
    from cj_health.build import build, refresh
    from cj_health.check import run_check
    from cj_health.eng5.anchors import register_anchors
    from cj_health.eng5.replay import replay_batch20
    from cj_health.eng5.reset import reset
    from cj_health.eng5.runner import execute_batch
    from cj_health.inspect import load_report, render_text
    from cj_health.runs import (
        build_summary,
        check_summary,
        recorded_run,
        refresh_summary,
    )
    from cj_health.schema import init_schema

    say(f"cj-health demo on {database.display}")
    step(say, 1, "CJ service schema")
    say(init_schema(database).summary(database.display))

    step(say, 2, "Recreate and reseed ENG5 dev data")
    say(reset(database).summary())
    say(f"registered {register_anchors(database)} ENG5 anchor references")
    healthy = []
    for seed in (1, 2):
        result = execute_batch(database, seed=seed, progress=lambda line: say(f"  {line}"))
        healthy.append(result.cj_batch_id)
        for line in result.summary_lines():
            say(f"  {line}")

    step(say, 3, "Replay the Batch 20 incident")
    incident = replay_batch20(database)
    for line in incident.summary_lines():
        say(f"  {line}")

    step(say, 4, "cj-health build (dbt run, then dbt test), then cj-health refresh")
    with recorded_run(database, "build") as run:
        built = build(database)
        run.exit_code = built.exit_code
        run.summary = build_summary(built)
    for line in built.summary().splitlines():
        say(f"  {line}")
    if not built.models_ok:
        raise CjHealthError("dbt could not build the monitoring models; see the lines above")
    with recorded_run(database, "refresh") as run:
        refreshed = refresh(database)
        run.summary = refresh_summary(refreshed)
    say(f"  {refreshed.summary()}")

    step(say, 5, f"{monitoring_schema()}.cj_batch_health")
    rows = health_rows(database)
    say(format_table(rows))

    step(say, 6, f"cj-health inspect {incident.cj_batch_id}")
    say(render_text(load_report(database, incident.cj_batch_id).as_dict()))

    step(say, 7, "cj-health check (Great Expectations)")
    with recorded_run(database, "check") as run:
        checked = run_check(database)
        run.exit_code = checked.exit_code
        run.summary = check_summary(checked)
    for line in checked.table_lines():
        say(f"  {line}")

    unhealthy = [r["cj_batch_id"] for r in rows if r["health_status"] != "HEALTHY"]
    step(say, 8, "Where to look next")
    say(f"  Data Docs:  {checked.data_docs_path}")
    say(f"  Grafana:    {project_dir() / 'grafana'} (datasource, dashboard, alert rules)")
    say(f"  Runbook:    {project_dir() / 'docs' / 'runbook.md'}")
    say("  Status:     cj-health status (the runs above are recorded; the incident alerts)")
    say("")
    say(
        f"The tooling worked. Unhealthy batches: {unhealthy or 'none'} — the replayed incident "
        f"(CJ batch {incident.cj_batch_id}) is flagged on purpose; the healthy batches "
        f"{healthy} are HEALTHY."
    )
    return DemoResult(
        healthy, incident.cj_batch_id, len(built.tests_failed), checked.exit_code, rows
    )


def health_rows(database: Database) -> list[dict]:
    query = sql.SQL("select {} from {} order by cj_batch_id").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in HEALTH_COLUMNS),
        sql.Identifier(monitoring_schema(), HEALTH_VIEW),
    )
    with connect(database) as conn:
        conn.row_factory = dict_row
        return conn.execute(query).fetchall()


def format_table(rows: list[dict]) -> str:
    """A plain fixed-width table of the health rows."""
    headers = [c.replace("_count", "s").replace("metadata_anchors", "md_anchors")
               for c in HEALTH_COLUMNS]
    cells = [[_cell(row[c]) for c in HEALTH_COLUMNS] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, list):
        return ",".join(value) or "-"
    return "-" if value is None else str(value)
