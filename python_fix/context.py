"""A batch's grading context, resolved as production's grade projector resolves it; one
definition for the finalizer's guard and the project's grade projector.

- Scale and anchors: the assignment's `assessment_instructions` row (its `grade_scale`, and the
  assignment's `anchor_essay_references` on that scale; source `assignment`), else the course's
  instruction (course_id = the batch's course_code; no anchors; source `course`), else
  `swedish_8_anchor` (source `default`). An unknown scale id is `swedish_8_anchor`.
- An anchor essay's grade, first match wins: the ranking's `anchor_grade`, its metadata
  `anchor_grade`, its metadata `known_grade`, the reference with its text_storage_id, the
  reference its metadata `anchor_ref_id` names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from python_fix.grade_scales import DEFAULT_SCALE_NAME, GradeScale, scale_named


@dataclass(frozen=True)
class AnchorReference:
    id: int
    grade: str
    text_storage_id: str


@dataclass(frozen=True)
class GradingContext:
    scale: GradeScale
    source: str  # assignment | course | default
    references: tuple[AnchorReference, ...]


async def resolve_context(
    session: AsyncSession, assignment_id: str | None, course_code: str | None
) -> GradingContext:
    """The batch's scale, where it came from, and the anchor references on it."""
    if assignment_id is not None:
        scale_id = await session.scalar(
            text("select grade_scale from assessment_instructions where assignment_id = :a"),
            {"a": assignment_id},
        )
        if scale_id is not None:
            scale = scale_named(scale_id)
            rows = await session.execute(
                text(
                    "select id, grade, text_storage_id from anchor_essay_references "
                    "where assignment_id = :a and grade_scale = :scale order by id"
                ),
                {"a": assignment_id, "scale": scale.name},
            )
            references = tuple(AnchorReference(r.id, r.grade, r.text_storage_id) for r in rows)
            return GradingContext(scale, "assignment", references)
    scale_id = await session.scalar(
        text(
            "select grade_scale from assessment_instructions "
            "where assignment_id is null and course_id = :course order by id limit 1"
        ),
        {"course": course_code},
    )
    if scale_id is not None:
        return GradingContext(scale_named(scale_id), "course", ())
    return GradingContext(scale_named(DEFAULT_SCALE_NAME), "default", ())


def anchor_grade(
    ranking: Mapping[str, Any], references: Sequence[AnchorReference]
) -> str | None:
    """The grade of one anchor essay (a ranking row, or any mapping with its
    `processing_metadata` and `text_storage_id`), or None when nothing names one."""
    metadata = ranking.get("processing_metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    for value in (ranking.get("anchor_grade"), metadata.get("anchor_grade"),
                  metadata.get("known_grade")):  # fmt: skip
        if value:
            return str(value)
    for reference in references:
        if reference.text_storage_id == ranking.get("text_storage_id"):
            return reference.grade
    ref_id = metadata.get("anchor_ref_id")
    for reference in references:
        if ref_id is not None and str(reference.id) == str(ref_id):
            return reference.grade
    return None
