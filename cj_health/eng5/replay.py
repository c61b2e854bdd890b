"""`cj-health eng5 replay-incident [FAULT]`: add a batch broken the way a catalogued fault
breaks it, so operators can watch the monitoring fire.

The default, `batch20_wedge`, replays the Batch 20 incident itself with its counts
as reported: expected 6 essays, upload COMPLETE_STABLE, state WAITING_CALLBACKS,
5 comparisons submitted and completed, none failed, partial scoring triggered, `completed_at`
NULL, no projections, 18 essay rows of which 15 are anchors by metadata while every
`is_anchor` column is false (the essays are written the way the unpatched repository wrote
them). It uses the incident's BOS batch id unless that one exists already.

Every other fault executes a healthy ENG5 batch (cj_health.eng5.runner) and breaks it with
cj_health.eng5.faults; the misattributed projection executes a second healthy batch to take the
projection from.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
from psycopg.types.json import Json

from cj_health.db import Database, connect
from cj_health.eng5.faults import break_batch, get_fault
from cj_health.schema import require_service_schema

DEFAULT_FAULT = "batch20_wedge"
INCIDENT_BOS_BATCH_ID = "1dd43744-6b5c-4ec5-961e-26c1d1dc22e6"
INCIDENT_EXPECTED_ESSAYS = 6
INCIDENT_ANCHORS = 15
INCIDENT_STUDENTS = 3
INCIDENT_COMPARISONS = 5
INCIDENT_IDLE = "60 minutes"
# The incident's codes beyond the wedge itself: the anchors lost their column flag.
INCIDENT_CODES = ("STUCK_FINALIZATION", "ANCHOR_FLAG_MISMATCH", "NO_ANCHORS")


@dataclass(frozen=True)
class ReplayResult:
    fault: str
    cj_batch_id: int
    bos_batch_id: str
    codes: tuple[str, ...]
    other_batch_id: int | None = None

    def summary_lines(self) -> list[str]:
        lines = [
            f"replayed {self.fault}: CJ batch {self.cj_batch_id} (BOS batch {self.bos_batch_id})",
            f"cj_batch_health will show: {', '.join(self.codes)} "
            "(after `cj-health refresh` or `cj-health build`)",
        ]
        if self.other_batch_id is not None:
            lines.append(
                f"the misfiled projection belongs to healthy CJ batch {self.other_batch_id}"
            )
        return lines


def replay_incident(
    database: Database, fault: str = DEFAULT_FAULT, *, seed: int = 0, out_dir: Path | None = None
) -> ReplayResult:
    """Add one batch broken by `fault` (a name in cj_health.eng5.faults.FAULTS). `out_dir` is
    where the ENG5 runner writes its artefacts (default: its own)."""
    entry = get_fault(fault)
    if entry.name == DEFAULT_FAULT:
        return replay_batch20(database, seed=seed)
    from cj_health.eng5.runner import execute_batch

    broken = execute_batch(database, seed=seed, out_dir=out_dir and out_dir / "broken")
    other = (
        execute_batch(database, seed=seed + 1, out_dir=out_dir and out_dir / "other")
        if entry.needs_other_batch
        else None
    )
    other_id = other.cj_batch_id if other else None
    break_batch(database, entry.name, broken.cj_batch_id, other_id)
    return ReplayResult(
        entry.name, broken.cj_batch_id, broken.bos_batch_id, (entry.code,), other_id
    )


def replay_batch20(database: Database, *, seed: int = 0) -> ReplayResult:
    """The Batch 20 incident with its counts, in one transaction (see the module docstring)."""
    from cj_health.eng5.anchors import (
        COURSE_CODE,
        DEV_ASSIGNMENT_ID,
        LANGUAGE,
        load_anchor_references,
        register_anchors_in,
    )
    from cj_health.eng5.essays import anchor_essays, student_essays
    from cj_health.eng5.judge import MockJudge
    from cj_health.eng5.runner import schedule_pairs

    rng = np.random.default_rng(seed)
    with connect(database) as conn:
        require_service_schema(conn, database)
        bos_batch_id = _incident_bos_batch_id(conn)
        references = load_anchor_references(conn, DEV_ASSIGNMENT_ID)
        if not references:
            register_anchors_in(conn, DEV_ASSIGNMENT_ID)
            references = load_anchor_references(conn, DEV_ASSIGNMENT_ID)
        # 15 anchor rows: every registered anchor, and the first three a second time.
        anchor_refs = [references[i % len(references)] for i in range(INCIDENT_ANCHORS)]
        essays = anchor_essays(rng, anchor_refs) + student_essays(rng, INCIDENT_STUDENTS)
        pairs = schedule_pairs(len(essays), INCIDENT_COMPARISONS, rng)
        judge = MockJudge(seed)

        cj_batch_id = conn.execute(
            "insert into cj_batch_uploads (bos_batch_id, event_correlation_id, language,"
            " course_code, expected_essay_count, status, created_at, updated_at,"
            " processing_metadata, assignment_id)"
            " values (%s, %s, %s, %s, %s, 'COMPLETE_STABLE', now() - %s::interval * 2,"
            " now() - %s::interval, %s, %s) returning id",
            (
                bos_batch_id,
                str(uuid.uuid4()),
                LANGUAGE,
                COURSE_CODE,
                INCIDENT_EXPECTED_ESSAYS,
                INCIDENT_IDLE,
                INCIDENT_IDLE,
                Json({"replay": DEFAULT_FAULT}),
                DEV_ASSIGNMENT_ID,
            ),
        ).fetchone()[0]
        conn.execute(
            "insert into cj_batch_states (batch_id, state, total_budget, total_comparisons,"
            " submitted_comparisons, completed_comparisons, failed_comparisons,"
            " last_activity_at, partial_scoring_triggered, current_iteration)"
            " values (%s, 'WAITING_CALLBACKS', %s, %s, %s, %s, 0, now() - %s::interval, true, 1)",
            (
                cj_batch_id,
                INCIDENT_COMPARISONS,
                INCIDENT_COMPARISONS,
                INCIDENT_COMPARISONS,
                INCIDENT_COMPARISONS,
                INCIDENT_IDLE,
            ),
        )
        compared = [0] * len(essays)
        for a, b in pairs:
            compared[a] += 1
            compared[b] += 1
        # The unpatched repository: metadata says anchor, the column stays false.
        with conn.cursor() as cur:
            cur.executemany(
                "insert into cj_processed_essays (els_essay_id, cj_batch_id, text_storage_id,"
                " assessment_input_text, comparison_count, is_anchor, processing_metadata)"
                " values (%s, %s, %s, %s, %s, false, %s)",
                [
                    (
                        essay.els_essay_id,
                        cj_batch_id,
                        essay.text_storage_id,
                        essay.text,
                        compared[index],
                        Json(essay.processing_metadata),
                    )
                    for index, essay in enumerate(essays)
                ],
            )
            rows = []
            for a, b in pairs:
                verdict = judge.compare(essays[a].hidden_quality, essays[b].hidden_quality)
                rows.append(
                    (
                        cj_batch_id,
                        essays[a].els_essay_id,
                        essays[b].els_essay_id,
                        "ENG5 replay of the Batch 20 incident: which essay is better?",
                        uuid.uuid4(),
                        INCIDENT_IDLE,
                        INCIDENT_IDLE,
                        verdict.winner,
                        verdict.confidence,
                        verdict.justification,
                    )
                )
            cur.executemany(
                "insert into cj_comparison_pairs (cj_batch_id, essay_a_els_id, essay_b_els_id,"
                " prompt_text, request_correlation_id, submitted_at, completed_at, winner,"
                " confidence, justification, pair_generation_mode)"
                " values (%s, %s, %s, %s, %s, now() - %s::interval * 1.5,"
                " now() - %s::interval, %s, %s, %s, 'coverage')",
                rows,
            )
        conn.commit()
    return ReplayResult(DEFAULT_FAULT, cj_batch_id, bos_batch_id, INCIDENT_CODES)


def _incident_bos_batch_id(conn: psycopg.Connection) -> str:
    taken = conn.execute(
        "select 1 from cj_batch_uploads where bos_batch_id = %s", (INCIDENT_BOS_BATCH_ID,)
    ).fetchone()
    return str(uuid.uuid4()) if taken else INCIDENT_BOS_BATCH_ID
