"""Grade scales the projection knows: grades ordered lowest to highest, priors, and the grade
given below the lowest anchor. Plain data, so importing it is cheap (no numpy)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GradeScale:
    """A grade scale: grades ordered lowest to highest, and the grade below the lowest anchor."""

    name: str
    grades: tuple[str, ...]
    below_lowest_grade: str | None = None

    def prior(self, grade: str) -> float:
        """Uniform priors over the scale's grades and its below-lowest grade."""
        return 1.0 / (len(self.grades) + (1 if self.below_lowest_grade else 0))


ENG5_SCALE = GradeScale(
    name="eng5_np_legacy_9_step",
    grades=("F+", "E-", "E+", "D-", "D+", "C-", "C+", "B", "A"),
    below_lowest_grade="F",
)
GRADE_SCALES: dict[str, GradeScale] = {ENG5_SCALE.name: ENG5_SCALE}
