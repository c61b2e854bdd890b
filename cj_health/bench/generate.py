"""A synthetic CJ service database of N batches, generated set-wise in SQL.

Shape: 10 to 40 essays per batch, a quarter of them anchors (ENG5 anchors of the
batch's assignment), about 5 comparisons per essay (2.5 comparison pairs per essay), BT scores,
grade projections and the two published outbox events for completed batches. Each batch draws a
*profile*: most are healthy (completed, waiting for callbacks, initialising, failed); 3 % carry a
fault from the catalogue (cj_health.eng5.faults), expressed set-wise and named as there (the
Batch 20 wedge, a scoring wedge, anchor flags lost, an anchor projected, an event missing, ...).

Every value is a deterministic hash of the batch id, so the same N gives the same database. The
rows go in with `insert ... select` over `generate_series`, a chunk of batches per transaction,
and the service tables keep their indexes and foreign keys exactly as the schema has them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from cj_health.db import Database, connect, source_schema
from cj_health.errors import CjHealthError
from cj_health.schema import SERVICE_TABLES
from python_fix.events import COMPLETED_TOPIC, RESOURCE_TOPIC, RESULT_EVENT_TYPE, RESULT_TOPIC

DEFAULT_CHUNK_BATCHES = 2000
ASSIGNMENTS = 20
GRADE_SCALE = "eng5_np_legacy_9_step"
# The grades of the 12 ENG5 anchors, lowest to highest (as in cj_health.eng5.anchors).
ANCHOR_GRADES = ("F+", "F+", "E-", "E+", "D-", "D+", "C-", "C+", "B", "B", "A", "A")
# Student grades by hidden quality, lowest first: `F` is below the lowest anchor.
STUDENT_GRADES = ("F", "F+", "E-", "E+", "D-", "D+", "C-", "C+", "B", "A")
PAIRS_PER_ESSAY = 2.5  # each pair has two essays: about 5 comparisons per essay
FINALIZATION_PROFILE = "awaiting_finalization"

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Profile:
    """What a batch looks like: its status, state, progress and which rows it has. A faulty
    profile is named after the fault in cj_health.eng5.faults.FAULTS that it reproduces."""

    name: str
    per_mille: int  # share of generated batches; 0: only when asked for by name
    status: str
    state: str
    fault: bool = False
    completed: bool = True  # completed_at set
    pairs_share: float = 1.0  # share of the planned comparison pairs that exist
    done_share: float = 1.0  # share of those that have a winner
    pending_pairs: int = 0  # pairs left without a winner on top of done_share
    scored: bool = True  # BT scores on the essays
    reliable: bool = True  # False: scores bunched together, every SE at the 2.0 cap
    # none | students | students_and_one_anchor | students_and_misattributed
    projections: str = "students"
    # all (completion, result, resource, as finalization writes them) | no_result | none;
    # written and published
    events: str = "all"
    anchor_flags_kept: bool = True  # False: is_anchor false although the metadata says true
    counter_offset: int = 0  # added to completed_comparisons (duplicate callbacks)
    idle_minutes: int | None = None  # None: last activity when the batch finished
    partial_scoring: bool = False


PROFILES: tuple[Profile, ...] = (
    Profile("completed_stable", 700, "COMPLETE_STABLE", "COMPLETED"),
    Profile("completed_max_comparisons", 100, "COMPLETE_MAX_COMPARISONS", "COMPLETED"),
    Profile(
        "waiting_callbacks", 110, "PERFORMING_COMPARISONS", "WAITING_CALLBACKS",
        completed=False, done_share=0.6, scored=False, projections="none", events="none",
        idle_minutes=1,
    ),
    Profile(
        "initializing", 30, "PENDING", "INITIALIZING", completed=False, pairs_share=0.0,
        scored=False, projections="none", events="none", idle_minutes=1,
    ),
    Profile(
        "failed", 30, "ERROR_PROCESSING", "FAILED", completed=False, done_share=0.3,
        scored=False, projections="none", events="none",
    ),
    # Faults (3 %), as cj_health.eng5.faults breaks a completed batch, expressed set-wise.
    Profile(
        "batch20_wedge", 5, "COMPLETE_STABLE", "WAITING_CALLBACKS", fault=True,
        completed=False, projections="none", events="none", idle_minutes=60,
        partial_scoring=True,
    ),
    Profile(
        "scoring_wedge", 4, "PERFORMING_COMPARISONS", "SCORING", fault=True,
        completed=False, projections="none", events="none", idle_minutes=90,
    ),
    Profile(
        "anchor_flags_lost", 4, "COMPLETE_STABLE", "COMPLETED", fault=True,
        anchor_flags_kept=False,
    ),
    Profile(
        "anchor_projected", 3, "COMPLETE_STABLE", "COMPLETED", fault=True,
        projections="students_and_one_anchor",
    ),
    Profile(
        "misattributed_projection", 2, "COMPLETE_STABLE", "COMPLETED", fault=True,
        projections="students_and_misattributed",
    ),
    Profile(
        "completed_without_timestamp", 2, "COMPLETE_STABLE", "COMPLETED", fault=True,
        completed=False,
    ),
    Profile("counter_mismatch", 3, "COMPLETE_STABLE", "COMPLETED", fault=True, counter_offset=2),
    Profile("event_missing", 3, "COMPLETE_STABLE", "COMPLETED", fault=True, events="no_result"),
    Profile("low_reliability", 2, "COMPLETE_STABLE", "COMPLETED", fault=True, reliable=False),
    Profile(
        "stalled", 2, "PERFORMING_COMPARISONS", "WAITING_CALLBACKS", fault=True,
        completed=False, pending_pairs=3, projections="none", events="none", idle_minutes=360,
    ),
    # The finalizer benchmark's batch: every comparison done, nothing scored yet.
    Profile(
        FINALIZATION_PROFILE, 0, "PERFORMING_COMPARISONS", "WAITING_CALLBACKS",
        completed=False, scored=False, projections="none", events="none", idle_minutes=0,
    ),
)
PROFILE_BY_NAME = {profile.name: profile for profile in PROFILES}
FAULT_NAMES = tuple(profile.name for profile in PROFILES if profile.fault)
assert sum(p.per_mille for p in PROFILES) == 1000


@dataclass
class GenerationSummary:
    """What was generated: row counts per table and batches per profile."""

    batches: int = 0
    essays: int = 0
    anchors: int = 0
    comparison_pairs: int = 0
    grade_projections: int = 0
    outbox_events: int = 0
    profiles: Counter = field(default_factory=Counter)
    faulty_batch_ids: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def faulty_batches(self) -> int:
        return sum(n for name, n in self.profiles.items() if PROFILE_BY_NAME[name].fault)

    def as_dict(self) -> dict[str, object]:
        return {
            "batches": self.batches,
            "essays": self.essays,
            "anchors": self.anchors,
            "comparison_pairs": self.comparison_pairs,
            "grade_projections": self.grade_projections,
            "outbox_events": self.outbox_events,
            "faulty_batches": self.faulty_batches,
            "batches_by_profile": dict(sorted(self.profiles.items())),
            "faulty_batch_ids": {name: ids for name, ids in sorted(self.faulty_batch_ids.items())},
            "seconds": round(self.seconds, 3),
        }


# Deterministic draws from a key: an int in [0, modulus) and a float in (0, 1).
HELPERS_SQL = """
create or replace function pg_temp.bench_int(key text, salt bigint, modulus integer)
returns integer language sql immutable
as $$ select ((hashtextextended(key, salt) & 2147483647) % modulus)::integer $$;
create or replace function pg_temp.bench_unit(key text, salt bigint)
returns double precision language sql immutable
as $$ select ((hashtextextended(key, salt) & 2147483647) + 0.5) / 2147483648.0 $$;
create temp table if not exists bench_profiles (
    name text primary key, roll_from integer, roll_to integer,
    status text, state text, completed boolean, pairs_share double precision,
    done_share double precision, pending_pairs integer, scored boolean, reliable boolean,
    projections text, events text, anchor_flags_kept boolean, counter_offset integer,
    idle_minutes integer, partial_scoring boolean
);
"""

ANCHOR_REFERENCES_SQL = """
insert into anchor_essay_references
    (id, anchor_label, grade, grade_scale, text_storage_id, assignment_id, created_at)
select a * 12 + s + 1,
       'anchor_essay_eng_5_17_vt_' || lpad((s + 1)::text, 3, '0'),
       (%(grades)s::text[])[s + 1],
       %(scale)s,
       'anchor-text-' || (a * 12 + s + 1),
       '00000000-0000-0000-0000-' || lpad((a + 1)::text, 12, '0'),
       now() - interval '400 days'
from generate_series(0, %(assignments)s - 1) as a
cross join generate_series(0, 11) as s
"""

# Each assignment's instruction names its scale: the finalizer resolves a batch's scale from it.
ASSESSMENT_INSTRUCTIONS_SQL = """
insert into assessment_instructions (assignment_id, instructions_text, grade_scale, created_at)
select '00000000-0000-0000-0000-' || lpad((a + 1)::text, 12, '0'),
       'ENG5 assignment ' || (a + 1),
       %(scale)s,
       now() - interval '400 days'
from generate_series(0, %(assignments)s - 1) as a
"""

# One chunk of batches [first, last]: three plans (batches, essays, pairs) as temp tables,
# then one insert ... select per service table.
PLAN_BATCHES_SQL = """
create temp table bench_batch_plan on commit drop as
with drawn as (
    select g as cj_batch_id,
           pg_temp.bench_int(g::text, 1, 1000) as profile_roll,
           coalesce(%(essays)s, 10 + pg_temp.bench_int(g::text, 2, 31)) as n_essays,
           pg_temp.bench_int(g::text, 3, %(assignments)s) as assignment_no,
           pg_temp.bench_int(g::text, 4, 30) as jitter_minutes
    from generate_series(%(first)s::integer, %(last)s::integer) as g
),
sized as (
    select d.*, p.*,
           coalesce(%(anchors)s, round(d.n_essays / 4.0)::integer) as n_anchors,
           round(coalesce(%(pairs)s, round(d.n_essays * %(pairs_per_essay)s))
               * p.pairs_share)::integer as pair_count,
           greatest(p.idle_minutes + 30, 60 + (%(total)s - d.cj_batch_id))
               + d.jitter_minutes as age_minutes
    from drawn as d
    inner join bench_profiles as p
        on case when %(profile)s::text is null
            then d.profile_roll >= p.roll_from and d.profile_roll < p.roll_to
            else p.name = %(profile)s::text end
)
select s.*,
       greatest(round(s.pair_count * s.done_share)::integer - s.pending_pairs, 0)
           as done_count,
       md5('bos:' || s.cj_batch_id)::uuid::text as bos_batch_id,
       md5('correlation:' || s.cj_batch_id)::uuid::text as event_correlation_id,
       '00000000-0000-0000-0000-' || lpad((s.assignment_no + 1)::text, 12, '0') as assignment_id,
       now() - make_interval(mins => s.age_minutes) as created_at,
       now() - make_interval(mins => s.age_minutes - 20) as finished_at,
       case when s.completed
           then now() - make_interval(mins => s.age_minutes - 20) end as completed_at,
       case when s.idle_minutes is null
           then now() - make_interval(mins => s.age_minutes - 20)
           else now() - make_interval(mins => s.idle_minutes) end as last_activity_at
from sized as s
"""

PLAN_ESSAYS_SQL = """
create temp table bench_essay_plan on commit drop as
with slots as (
    select b.cj_batch_id, b.assignment_no, e.idx, e.idx < b.n_anchors as is_anchor_essay,
           e.idx %% 12 as anchor_slot,
           b.assignment_no * 12 + e.idx %% 12 + 1 as anchor_ref_id
    from bench_batch_plan as b
    cross join lateral generate_series(0, b.n_essays - 1) as e (idx)
)
select s.cj_batch_id, s.idx, s.is_anchor_essay, s.anchor_slot, s.anchor_ref_id,
       case when s.is_anchor_essay
           then 'ANCHOR_' || s.anchor_ref_id || '_'
               -- unique 8 hex digits: a bijection of (batch, slot), never a hash collision
               || lpad(to_hex((s.cj_batch_id * 16 + s.idx) # 1515870810), 8, '0')
           else md5('essay:' || s.cj_batch_id || ':' || s.idx)::uuid::text
       end as els_essay_id,
       case when s.is_anchor_essay
           then (s.anchor_slot - 5.5) / 2.0
           else 1.5 * sqrt(-2 * ln(pg_temp.bench_unit(s.cj_batch_id || ':' || s.idx, 5)))
               * cos(2 * pi() * pg_temp.bench_unit(s.cj_batch_id || ':' || s.idx, 6))
       end as quality
from slots as s
"""

PLAN_PAIRS_SQL = """
create temp table bench_pair_plan on commit drop as
with slots as (
    select b.cj_batch_id, b.n_essays, b.done_count, k.k
    from bench_batch_plan as b
    cross join lateral generate_series(0, b.pair_count - 1) as k (k)
)
select s.cj_batch_id, s.k, s.k < s.done_count as done,
       s.k %% s.n_essays as a_idx,
       (s.k %% s.n_essays + 1 + (s.k / s.n_essays) %% (s.n_essays - 1)) %% s.n_essays as b_idx
from slots as s
"""

INSERT_UPLOADS_SQL = """
insert into cj_batch_uploads
    (id, bos_batch_id, event_correlation_id, language, course_code, expected_essay_count,
     status, created_at, updated_at, completed_at, processing_metadata, assignment_id,
     user_id, org_id)
select b.cj_batch_id, b.bos_batch_id, b.event_correlation_id, 'en', 'ENG5',
       b.n_essays - b.n_anchors, b.status::cj_batch_status_enum, b.created_at,
       b.last_activity_at, b.completed_at,
       json_build_object('source', 'cj-health bench'), b.assignment_id,
       'user-' || pg_temp.bench_int(b.cj_batch_id::text, 7, 5000),
       'org-' || pg_temp.bench_int(b.cj_batch_id::text, 8, 200)
from bench_batch_plan as b
order by b.cj_batch_id
"""

INSERT_STATES_SQL = """
insert into cj_batch_states
    (batch_id, state, total_budget, total_comparisons, submitted_comparisons,
     completed_comparisons, failed_comparisons, last_activity_at, partial_scoring_triggered,
     completion_threshold_pct, current_iteration, processing_metadata)
select b.cj_batch_id, b.state::cj_batch_state_enum, b.pair_count, b.pair_count, b.pair_count,
       b.done_count + b.counter_offset, 0, b.last_activity_at, b.partial_scoring, 95,
       case when b.pair_count = 0 then 0 else 1 + b.pair_count / b.n_essays end,
       json_build_object('source', 'cj-health bench')
from bench_batch_plan as b
order by b.cj_batch_id
"""

INSERT_ESSAYS_SQL = """
insert into cj_processed_essays
    (els_essay_id, cj_batch_id, text_storage_id, assessment_input_text, current_bt_score,
     current_bt_se, comparison_count, is_anchor, created_at, updated_at, processing_metadata)
with appearances as (
    select cj_batch_id, a_idx as idx from bench_pair_plan where done
    union all
    select cj_batch_id, b_idx as idx from bench_pair_plan where done
),
counts as (
    select cj_batch_id, idx, count(*) as n from appearances group by cj_batch_id, idx
)
select e.els_essay_id, e.cj_batch_id, 'text-' || left(md5(e.els_essay_id), 16),
       'Generated essay ' || e.idx || ' of batch ' || e.cj_batch_id || '.',
       case when b.scored and b.reliable then round(e.quality::numeric, 4)::double precision
           when b.scored then round(0.2 * e.quality::numeric, 4)::double precision end,
       case when b.scored and b.reliable then 0.2 when b.scored then 2.0 end,
       coalesce(c.n, 0),
       e.is_anchor_essay and b.anchor_flags_kept,
       b.created_at, b.last_activity_at,
       case when e.is_anchor_essay then json_build_object(
           'is_anchor', true,
           'known_grade', (%(grades)s::text[])[e.anchor_slot + 1],
           'anchor_ref_id', e.anchor_ref_id::text,
           'anchor_label', 'anchor_essay_eng_5_17_vt_' || lpad((e.anchor_slot + 1)::text, 3, '0'))
       end
from bench_essay_plan as e
inner join bench_batch_plan as b on b.cj_batch_id = e.cj_batch_id
left join counts as c on c.cj_batch_id = e.cj_batch_id and c.idx = e.idx
order by e.cj_batch_id, e.idx
"""

INSERT_PAIRS_SQL = """
insert into cj_comparison_pairs
    (cj_batch_id, essay_a_els_id, essay_b_els_id, prompt_text, request_correlation_id,
     submitted_at, completed_at, winner, confidence, justification, created_at,
     processing_metadata, pair_generation_mode)
select p.cj_batch_id, ea.els_essay_id, eb.els_essay_id,
       'Which of essays A and B is the better answer to the assignment?',
       md5('request:' || p.cj_batch_id || ':' || p.k)::uuid,
       b.created_at + make_interval(secs => 10 + p.k),
       case when p.done then b.created_at + make_interval(secs => 60 + p.k) end,
       case when not p.done then null
           when ea.quality - eb.quality
               + ln(1 / pg_temp.bench_unit(p.cj_batch_id || ':' || p.k, 9) - 1) < 0
           then 'essay_a' else 'essay_b' end,
       case when p.done then 0.5 + pg_temp.bench_unit(p.cj_batch_id || ':' || p.k, 10) / 2 end,
       case when p.done then 'Simulated judgement.' end,
       b.created_at + make_interval(secs => 5 + p.k),
       null,
       case when p.k < 2 * b.n_essays then 'coverage' else 'resampling' end
from bench_pair_plan as p
inner join bench_batch_plan as b on b.cj_batch_id = p.cj_batch_id
inner join bench_essay_plan as ea on ea.cj_batch_id = p.cj_batch_id and ea.idx = p.a_idx
inner join bench_essay_plan as eb on eb.cj_batch_id = p.cj_batch_id and eb.idx = p.b_idx
order by p.cj_batch_id, p.k
"""

INSERT_PROJECTIONS_SQL = """
insert into grade_projections
    (els_essay_id, cj_batch_id, primary_grade, grade_scale, confidence_score,
     confidence_label, calculation_metadata, population_prior, created_at, assessment_method,
     model_used, model_provider, normalized_score)
with projected as (
    select e.els_essay_id, e.cj_batch_id, e.quality
    from bench_essay_plan as e
    inner join bench_batch_plan as b on b.cj_batch_id = e.cj_batch_id
    where (b.projections <> 'none' and not e.is_anchor_essay)
       or (b.projections = 'students_and_one_anchor' and e.idx = 0)
    union all
    -- misattributed: a student essay of the previous batch filed under this batch
    select other.els_essay_id, b.cj_batch_id, 0.0
    from bench_batch_plan as b
    cross join lateral (
        select o.els_essay_id from cj_processed_essays as o
        where o.cj_batch_id = b.cj_batch_id - 1 and not o.is_anchor
        order by o.els_essay_id limit 1
    ) as other
    where b.projections = 'students_and_misattributed'
),
graded as (
    select p.els_essay_id, p.cj_batch_id, b.finished_at,
           (%(student_grades)s::text[])[
               least(9, greatest(0, floor((p.quality + 3.0) / 0.6)::integer)) + 1
           ] as primary_grade,
           0.25 + 0.7 * pg_temp.bench_unit(p.els_essay_id, 11) as confidence,
           p.quality
    from projected as p
    inner join bench_batch_plan as b on b.cj_batch_id = p.cj_batch_id
)
select g.els_essay_id, g.cj_batch_id, g.primary_grade, %(scale)s, g.confidence,
       case when g.confidence >= 0.7 then 'HIGH' when g.confidence >= 0.4 then 'MID'
           else 'LOW' end,
       json_build_object('method', 'bradley_terry', 'source', 'cj-health bench'),
       0.1, g.finished_at, 'cj_assessment', 'simulated-judge', 'cj-health bench',
       least(1.0, greatest(0.0, (g.quality + 4.5) / 9.0))
from graded as g
order by g.cj_batch_id, g.els_essay_id
"""

INSERT_EVENTS_SQL = """
insert into event_outbox
    (id, aggregate_id, aggregate_type, event_type, event_data, topic, event_key, created_at,
     published_at, retry_count)
with events as (
    select b.*, t.topic, t.event_type, t.aggregate_type,
           case when t.aggregate_type = 'assessment_result' then b.cj_batch_id::text
               else b.bos_batch_id end as aggregate_id
    from bench_batch_plan as b
    cross join (
        values (%(completed)s, %(completed)s, 'cj_batch'),
            (%(result)s, %(result_event_type)s, 'assessment_result'),
            (%(resource)s, %(resource)s, 'resource_consumption')
    ) as t (topic, event_type, aggregate_type)
    where b.events = 'all'
        or (b.events = 'no_result' and t.aggregate_type <> 'assessment_result')
)
select md5('event:' || e.cj_batch_id || ':' || e.topic)::uuid, e.aggregate_id,
       e.aggregate_type, e.event_type,
       json_build_object(
           'event_id', md5('event:' || e.cj_batch_id || ':' || e.topic)::uuid,
           'event_type', e.topic,
           'event_timestamp', e.finished_at,
           'source_service', 'cj_assessment_service',
           'schema_version', 1,
           'correlation_id', e.event_correlation_id,
           'data', json_build_object('bos_batch_id', e.bos_batch_id,
                                     'cj_batch_id', e.cj_batch_id,
                                     'status', e.status),
           'metadata', json_build_object()),
       e.topic, e.aggregate_id, e.finished_at, e.finished_at + interval '2 seconds', 0
from events as e
order by e.cj_batch_id, e.topic
"""

CHUNK_TALLY_SQL = """
select name, count(*)::integer,
       array_agg(cj_batch_id order by cj_batch_id) filter (where name = any(%(faults)s::text[]))
from bench_batch_plan
group by name
"""

COUNTS_SQL = """
select (select count(*) from cj_batch_uploads),
       (select count(*) from cj_processed_essays),
       (select count(*) from cj_processed_essays
            where processing_metadata ->> 'is_anchor' = 'true'),
       (select count(*) from cj_comparison_pairs),
       (select count(*) from grade_projections),
       (select count(*) from event_outbox)
"""

SEQUENCES_SQL = """
select setval(pg_get_serial_sequence('cj_batch_uploads', 'id'),
              greatest((select max(id) from cj_batch_uploads), 1));
select setval(pg_get_serial_sequence('anchor_essay_references', 'id'),
              greatest((select max(id) from anchor_essay_references), 1))
"""


def _prepare_session(conn: psycopg.Connection) -> None:
    """Search path, the draw functions and the profile table, on an autocommit connection."""
    conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(source_schema())))
    conn.execute(HELPERS_SQL)
    conn.execute("truncate bench_profiles")
    roll = 0
    rows = []
    for p in PROFILES:
        rows.append((
            p.name, roll, roll + p.per_mille, p.status, p.state, p.completed, p.pairs_share,
            p.done_share, p.pending_pairs, p.scored, p.reliable, p.projections, p.events,
            p.anchor_flags_kept, p.counter_offset, p.idle_minutes, p.partial_scoring,
        ))
        roll += p.per_mille
    with conn.cursor() as cur:
        cur.executemany(
            "insert into bench_profiles values "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def _generate_chunk(
    conn: psycopg.Connection,
    summary: GenerationSummary,
    first: int,
    last: int,
    total: int,
    *,
    essays: int | None = None,
    anchors: int | None = None,
    pairs: int | None = None,
    profile: str | None = None,
) -> None:
    """Generate batches first..last in one transaction; tally them in `summary`."""
    params = {
        "first": first, "last": last, "total": total, "essays": essays, "anchors": anchors,
        "pairs": pairs, "profile": profile, "assignments": ASSIGNMENTS,
        "pairs_per_essay": PAIRS_PER_ESSAY, "grades": list(ANCHOR_GRADES),
        "student_grades": list(STUDENT_GRADES), "scale": GRADE_SCALE,
        "completed": COMPLETED_TOPIC, "result": RESULT_TOPIC,
        "result_event_type": RESULT_EVENT_TYPE, "resource": RESOURCE_TOPIC,
        "faults": list(FAULT_NAMES),
    }
    with conn.transaction():
        for statement in (PLAN_BATCHES_SQL, PLAN_ESSAYS_SQL, PLAN_PAIRS_SQL):
            conn.execute(statement, params)
        conn.execute("analyze bench_batch_plan, bench_essay_plan, bench_pair_plan")
        for statement in (
            INSERT_UPLOADS_SQL, INSERT_STATES_SQL, INSERT_ESSAYS_SQL, INSERT_PAIRS_SQL,
            INSERT_PROJECTIONS_SQL, INSERT_EVENTS_SQL,
        ):
            conn.execute(statement, params)
        for name, count, faulty_ids in conn.execute(CHUNK_TALLY_SQL, params).fetchall():
            summary.profiles[name] += count
            if faulty_ids:
                summary.faulty_batch_ids.setdefault(name, []).extend(faulty_ids)


def generate(
    database: Database,
    batches: int,
    *,
    chunk_batches: int = DEFAULT_CHUNK_BATCHES,
    progress: ProgressFn | None = None,
) -> GenerationSummary:
    """Fill an empty CJ schema with `batches` synthetic batches (ids 1..batches), then
    VACUUM ANALYZE the service tables so that measurements see settled statistics."""
    if batches < 1:
        raise CjHealthError("the number of batches must be at least 1")
    started = time.perf_counter()
    summary = GenerationSummary()
    with connect(database, autocommit=True) as conn:
        _prepare_session(conn)
        if conn.execute("select exists (select from cj_batch_uploads)").fetchone()[0]:
            raise CjHealthError(
                f"{database.display} already holds CJ batches; the generator fills only an "
                "empty CJ schema"
            )
        with conn.transaction():
            conn.execute(
                ANCHOR_REFERENCES_SQL,
                {"grades": list(ANCHOR_GRADES), "scale": GRADE_SCALE, "assignments": ASSIGNMENTS},
            )
            conn.execute(
                ASSESSMENT_INSTRUCTIONS_SQL, {"scale": GRADE_SCALE, "assignments": ASSIGNMENTS}
            )
        for first in range(1, batches + 1, chunk_batches):
            last = min(first + chunk_batches - 1, batches)
            _generate_chunk(conn, summary, first, last, batches)
            if progress:
                progress(last, batches)
        conn.execute(SEQUENCES_SQL)
        _fill_counts(conn, summary)
    vacuum_analyze(database)
    summary.seconds = time.perf_counter() - started
    return summary


def add_finalization_batch(database: Database, *, essays: int, comparisons: int) -> int:
    """Add one batch of `essays` essays (12 ENG5 anchors) and `comparisons` completed
    comparison pairs, waiting for finalization; return its CJ batch id."""
    if essays < 14 or comparisons < essays:
        raise CjHealthError("a finalization batch needs at least 14 essays and one pair each")
    with connect(database, autocommit=True) as conn:
        _prepare_session(conn)
        cj_batch_id = conn.execute(
            "select coalesce(max(id), 0) + 1 from cj_batch_uploads"
        ).fetchone()[0]
        _generate_chunk(
            conn, GenerationSummary(), cj_batch_id, cj_batch_id, cj_batch_id, essays=essays,
            anchors=12, pairs=comparisons, profile=FINALIZATION_PROFILE,
        )
        conn.execute(SEQUENCES_SQL)
    return cj_batch_id


def vacuum_analyze(database: Database) -> None:
    with connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(source_schema())))
        for table in SERVICE_TABLES:
            conn.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier(table)))


def _fill_counts(conn: psycopg.Connection, summary: GenerationSummary) -> None:
    row = conn.execute(COUNTS_SQL).fetchone()
    (summary.batches, summary.essays, summary.anchors, summary.comparison_pairs,
     summary.grade_projections, summary.outbox_events) = row
