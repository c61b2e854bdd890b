"""The naive peer: batch health the per-batch diagnostic way, for comparison with the refresh.

Production's `inspect_batch_state` script looks at one batch with a handful of queries over
the service tables. Run over every batch, that is how a monitor without a set-wise view would
work. The peer runs five such per-table queries (the batch with its state, essays, pairs,
projections and outbox events) for each batch, on one connection (psycopg prepares the
statements after a few runs), which is the kindest setting for the peer: no connection per
batch, no health view.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from psycopg import sql

from cj_health.db import Database, connect, source_schema

QUERIES_PER_BATCH = 5

BATCH_SQL = """
select u.id as cj_batch_id, u.bos_batch_id, u.status::text as upload_status,
       s.state::text as cj_state
from cj_batch_uploads u
left join cj_batch_states s on s.batch_id = u.id
where u.id = %(id)s
"""

ESSAYS_SQL = """
select count(*) as total,
       count(*) filter (where is_anchor) as anchors_by_flag,
       count(*) filter (where lower(processing_metadata->>'is_anchor') = 'true')
           as anchors_by_metadata
from cj_processed_essays where cj_batch_id = %(id)s
"""

PAIRS_SQL = """
select count(*) as total,
       count(*) filter (where winner in ('essay_a', 'essay_b')) as completed
from cj_comparison_pairs where cj_batch_id = %(id)s
"""

PROJECTIONS_SQL = """
select p.primary_grade, count(*) as n
from grade_projections p
where p.cj_batch_id = %(id)s
group by p.primary_grade order by p.primary_grade
"""

EVENTS_SQL = """
select topic, aggregate_type, published_at
from event_outbox
where (aggregate_type in ('cj_batch', 'resource_consumption') and aggregate_id = %(bos)s)
   or (aggregate_type = 'assessment_result' and aggregate_id = %(id_text)s)
"""


@dataclass(frozen=True)
class BatchFacts:
    """What the peer learns about one batch: the counts a health verdict needs."""

    cj_batch_id: int
    upload_status: str
    cj_state: str | None
    essays: int
    anchors_by_flag: int
    anchors_by_metadata: int
    pairs: int
    completed_pairs: int
    projections: int
    events: int


@dataclass
class PeerRun:
    """One pass of the peer over `batches` batches."""

    batches: int
    queries: int
    seconds: float
    facts: list[BatchFacts] = field(default_factory=list)
    seconds_by_query: dict[str, float] = field(default_factory=dict)

    @property
    def per_batch_ms(self) -> float:
        return 1000.0 * self.seconds / self.batches if self.batches else 0.0


def sample_batch_ids(all_ids: Sequence[int], limit: int | None) -> list[int]:
    """All ids, or `limit` of them evenly spread over the id range (deterministic)."""
    ids = list(all_ids)
    if limit is None or limit >= len(ids):
        return ids
    if limit < 1:
        raise ValueError("a sample needs at least one batch")
    step = len(ids) / limit
    return [ids[int(i * step)] for i in range(limit)]


def inspect_batch(
    conn, cj_batch_id: int, seconds_by_query: dict[str, float] | None = None
) -> BatchFacts | None:
    """The five queries for one batch; None when the batch does not exist. When given,
    `seconds_by_query` accumulates the time spent in each query."""
    clock = seconds_by_query if seconds_by_query is not None else {}

    def run(name: str, query: str, params: dict) -> list:
        started = time.perf_counter()
        rows = conn.execute(query, params).fetchall()
        clock[name] = clock.get(name, 0.0) + time.perf_counter() - started
        return rows

    params = {"id": cj_batch_id, "id_text": str(cj_batch_id)}
    found = run("batch", BATCH_SQL, params)
    if not found:
        return None
    batch = found[0]
    params["bos"] = batch["bos_batch_id"]
    essays = run("essays", ESSAYS_SQL, params)[0]
    pairs = run("pairs", PAIRS_SQL, params)[0]
    projections = run("projections", PROJECTIONS_SQL, params)
    events = run("events", EVENTS_SQL, params)
    return BatchFacts(
        cj_batch_id=cj_batch_id,
        upload_status=batch["upload_status"],
        cj_state=batch["cj_state"],
        essays=essays["total"],
        anchors_by_flag=essays["anchors_by_flag"],
        anchors_by_metadata=essays["anchors_by_metadata"],
        pairs=pairs["total"],
        completed_pairs=pairs["completed"],
        projections=sum(row["n"] for row in projections),
        events=len(events),
    )


def run_peer(
    database: Database,
    batch_ids: Sequence[int],
    *,
    keep_facts: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PeerRun:
    """Inspect every batch in `batch_ids`, one after another; time the whole pass."""
    from psycopg.rows import dict_row

    run = PeerRun(batches=0, queries=0, seconds=0.0)
    with connect(database, autocommit=True) as conn:
        conn.row_factory = dict_row
        conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(source_schema())))
        every = max(1, len(batch_ids) // 20)
        started = time.perf_counter()
        for done, cj_batch_id in enumerate(batch_ids, start=1):
            facts = inspect_batch(conn, cj_batch_id, run.seconds_by_query)
            run.batches += 1
            run.queries += QUERIES_PER_BATCH if facts else 1
            if keep_facts and facts:
                run.facts.append(facts)
            if progress and (done % every == 0 or done == len(batch_ids)):
                progress(done, len(batch_ids))
        run.seconds = time.perf_counter() - started
    return run
