"""The 12 ENG5 anchor references and the dev environment's ids (production's ENG5 data set)."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from cj_health.db import Database, connect
from cj_health.schema import require_service_schema
from python_fix.grade_scales import ENG5_SCALE

DEV_ASSIGNMENT_ID = "00000000-0000-0000-0000-000000000001"
DEV_COURSE_ID = "00000000-0000-0000-0000-000000000002"
COURSE_CODE = "ENG5"
LANGUAGE = "en"
INSTRUCTIONS_TEXT = "ENG5 national test essay: compare the two essays as a whole."
# The scale is defined once, in python_fix.grade_scales (the finalizer projects with it).
GRADE_SCALE = ENG5_SCALE.name  # "eng5_np_legacy_9_step"
# The scale's grades, lowest to highest: F+, E-, E+, D-, D+, C-, C+, B, A.
GRADES: tuple[str, ...] = ENG5_SCALE.grades
# An essay below the lowest anchor grade gets F.
BELOW_LOWEST_GRADE: str = ENG5_SCALE.below_lowest_grade or "F"
# Every grade an essay can be given, lowest to highest.
ALL_GRADES = (BELOW_LOWEST_GRADE, *GRADES)
ANCHORS: tuple[tuple[str, str], ...] = (
    ("anchor_essay_eng_5_17_vt_001", "F+"),
    ("anchor_essay_eng_5_17_vt_002", "F+"),
    ("anchor_essay_eng_5_17_vt_003", "E-"),
    ("anchor_essay_eng_5_17_vt_004", "E+"),
    ("anchor_essay_eng_5_17_vt_005", "D-"),
    ("anchor_essay_eng_5_17_vt_006", "D+"),
    ("anchor_essay_eng_5_17_vt_007", "C-"),
    ("anchor_essay_eng_5_17_vt_008", "C+"),
    ("anchor_essay_eng_5_17_vt_009", "B"),
    ("anchor_essay_eng_5_17_vt_010", "B"),
    ("anchor_essay_eng_5_17_vt_011", "A"),
    ("anchor_essay_eng_5_17_vt_012", "A"),
)


@dataclass(frozen=True)
class AnchorReference:
    """A row of anchor_essay_references."""

    id: int
    anchor_label: str
    grade: str
    text_storage_id: str | None


def text_storage_id(anchor_label: str) -> str:
    return f"eng5-anchors/{anchor_label}"


def register_anchors_in(conn: psycopg.Connection, assignment_id: str) -> int:
    """Upsert the assignment's `assessment_instructions` row (its grade scale: production
    resolves a batch's scale from it) and the 12 ENG5 anchor references for `assignment_id`,
    in the caller's transaction."""
    conn.execute(
        "insert into assessment_instructions (assignment_id, instructions_text, grade_scale) "
        "values (%s, %s, %s) on conflict (assignment_id) do update set "
        "grade_scale = excluded.grade_scale",
        (assignment_id, INSTRUCTIONS_TEXT, GRADE_SCALE),
    )
    with conn.cursor() as cur:
        cur.executemany(
            "insert into anchor_essay_references "
            "(anchor_label, grade, grade_scale, text_storage_id, assignment_id) "
            "values (%s, %s, %s, %s, %s) "
            "on conflict (assignment_id, anchor_label, grade_scale) do update set "
            "grade = excluded.grade, text_storage_id = excluded.text_storage_id",
            [
                (label, grade, GRADE_SCALE, text_storage_id(label), assignment_id)
                for label, grade in ANCHORS
            ],
        )
    return len(ANCHORS)


def register_anchors(database: Database, assignment_id: str = DEV_ASSIGNMENT_ID) -> int:
    """Upsert the 12 ENG5 anchor references; running it twice still leaves 12 rows. Without
    the CJ service tables: CjHealthError (exit 2), "run `cj-health db init` first"."""
    with connect(database) as conn, conn.transaction():
        require_service_schema(conn, database)
        return register_anchors_in(conn, assignment_id)


def load_anchor_references(conn: psycopg.Connection, assignment_id: str) -> list[AnchorReference]:
    """The ENG5 anchors registered for `assignment_id`, in label order."""
    rows = conn.execute(
        "select id, anchor_label, grade, text_storage_id from anchor_essay_references "
        "where assignment_id = %s and grade_scale = %s order by anchor_label",
        (assignment_id, GRADE_SCALE),
    ).fetchall()
    return [AnchorReference(*row) for row in rows]
