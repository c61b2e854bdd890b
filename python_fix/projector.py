"""The project's grade projector, the default `grade_projector` of `BatchFinalizer`: production's
protocol and production's maths (python_fix.scoring).

`GradeProjector(session_provider=...)`, then
`calculate_projections(rankings, cj_batch_id, assignment_id, course_code, content_client,
correlation_id) -> GradeProjectionSummary`. Like production's, it resolves the batch's context
(python_fix.context) and **stores the projections and commits them in its own session**, one
plain INSERT per student (never for an anchor), all in one commit. Without anchors of two
distinct scale grades, or without students, it writes nothing and returns a summary with
`projections_available=False`. `content_client` is accepted for the protocol and not used.

Each row: primary_grade (the final grade), confidence_score and confidence_label, grade_scale,
population_prior (the prior of the primary anchor grade), normalized_score left NULL, and
calculation_metadata with bt_mean, bt_se, grade_probabilities, grade_centers, grade_boundaries
(null for an unbounded end), context_source, calibration_method `gaussian_mixture`,
primary_anchor_grade and grade_scale.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from python_fix import scoring
from python_fix.context import anchor_grade, resolve_context
from python_fix.models import GradeProjection

CALIBRATION_METHOD = "gaussian_mixture"


class SessionProvider(Protocol):
    def session(self) -> AbstractAsyncContextManager[AsyncSession]: ...


@dataclass
class GradeProjectionSummary:
    """Production's GradeProjectionSummary: per student essay id, its grade and confidence."""

    projections_available: bool = False
    primary_grades: dict[str, str] = field(default_factory=dict)
    confidence_labels: dict[str, str] = field(default_factory=dict)
    confidence_scores: dict[str, float] = field(default_factory=dict)
    grade_probabilities: dict[str, dict[str, float]] = field(default_factory=dict)
    calibration_info: dict[str, Any] = field(default_factory=dict)
    bt_stats: dict[str, dict[str, float]] = field(default_factory=dict)


class GradeProjector:
    """Projects the students of a ranked batch and stores the projections (own session)."""

    def __init__(self, *, session_provider: SessionProvider) -> None:
        self._sessions = session_provider

    async def calculate_projections(
        self,
        rankings: Sequence[Mapping[str, Any]],
        cj_batch_id: int,
        assignment_id: str | None,
        course_code: str | None,
        content_client: Any,
        correlation_id: uuid.UUID,
    ) -> GradeProjectionSummary:
        async with self._sessions.session() as session:
            context = await resolve_context(session, assignment_id, course_code)
            anchors = [r for r in rankings if r.get("is_anchor")]
            students = [r for r in rankings if not r.get("is_anchor")]
            anchor_scores = [
                (grade, _score(r))
                for r in anchors
                if (grade := anchor_grade(r, context.references)) is not None
            ]
            calibration = scoring.calibrate(context.scale, anchor_scores)
            if calibration is None or not students:
                await session.rollback()
                return GradeProjectionSummary()
            summary = GradeProjectionSummary(
                projections_available=True,
                calibration_info={
                    "grade_scale": context.scale.name,
                    "context_source": context.source,
                    "anchors_used": len(anchor_scores),
                    "grade_centers": calibration.means,
                    "grade_boundaries": _boundaries(calibration),
                },
            )
            for ranking in students:
                essay_id = str(ranking["els_essay_id"])
                score, se = _score(ranking), _se(ranking)
                projection = scoring.project(calibration, score, se)
                summary.primary_grades[essay_id] = projection.primary_grade
                summary.confidence_labels[essay_id] = projection.confidence_label
                summary.confidence_scores[essay_id] = projection.confidence_score
                summary.grade_probabilities[essay_id] = projection.probabilities
                summary.bt_stats[essay_id] = {"bt_mean": score, "bt_se": se}
                session.add(
                    GradeProjection(
                        els_essay_id=essay_id,
                        cj_batch_id=cj_batch_id,
                        primary_grade=projection.primary_grade,
                        confidence_score=projection.confidence_score,
                        confidence_label=projection.confidence_label,
                        grade_scale=context.scale.name,
                        population_prior=projection.population_prior,
                        calculation_metadata={
                            "bt_mean": score,
                            "bt_se": se,
                            "grade_probabilities": projection.probabilities,
                            "grade_centers": calibration.means,
                            "grade_boundaries": _boundaries(calibration),
                            "context_source": context.source,
                            "calibration_method": CALIBRATION_METHOD,
                            "primary_anchor_grade": projection.primary_anchor_grade,
                            "grade_scale": context.scale.name,
                        },
                    )
                )
            await session.commit()
        return summary


def _score(ranking: Mapping[str, Any]) -> float:
    value = ranking.get("bradley_terry_score")
    return float(value) if value is not None else 0.0


def _se(ranking: Mapping[str, Any]) -> float:
    value = ranking.get("bradley_terry_se")
    return float(value) if value is not None else scoring.SE_CAP


def _boundaries(calibration: scoring.Calibration) -> dict[str, list[float | None]]:
    """Each grade's band as [lower, upper], None for an unbounded end (JSON has no infinity)."""
    return {
        grade: [bound if math.isfinite(bound) else None for bound in band]
        for grade, band in calibration.boundaries.items()
    }
