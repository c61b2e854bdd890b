"""The grade scales production knows (common_core grade_scales): grades ordered lowest to
highest, their priors, the grade given below the lowest anchor, and the Swedish scale's minus
and plus grades. Plain data, so importing it is cheap (no numpy).

A scale id production does not know falls back to `swedish_8_anchor`, as production does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_SCALE_NAME = "swedish_8_anchor"
# EssayResultV1.letter_grade: a grade the result event can carry.
LETTER_GRADE_PATTERN = re.compile(r"^([A-F][+-]?|U)$")
NO_GRADE = "U"


@dataclass(frozen=True)
class GradeScale:
    """A grade scale: grades lowest to highest, their priors, the grade below the lowest."""

    name: str
    grades: tuple[str, ...]
    priors: tuple[float, ...]
    below_lowest_grade: str | None = None
    # Grades that become `<grade>-` in the lowest quarter of their band, `<grade>+` in the top.
    minus_grades: tuple[str, ...] = ()
    plus_grades: tuple[str, ...] = ()

    def prior(self, grade: str) -> float:
        """The prior of a scale grade; the below-lowest grade shares the smallest prior."""
        if grade in self.grades:
            return self.priors[self.grades.index(grade)]
        return min(self.priors)

    @property
    def all_grades(self) -> tuple[str, ...]:
        """Every grade a projection can carry, lowest to highest: the below-lowest grade, then
        each scale grade preceded by its minus grade and followed by its plus grade."""
        graded: list[str] = [self.below_lowest_grade] if self.below_lowest_grade else []
        for grade in self.grades:
            graded += [f"{grade}-"] if grade in self.minus_grades else []
            graded.append(grade)
            graded += [f"{grade}+"] if grade in self.plus_grades else []
        return tuple(graded)

    @property
    def fits_result_event(self) -> bool:
        """Whether every grade passes EssayResultV1's letter_grade pattern."""
        return all(LETTER_GRADE_PATTERN.match(grade) for grade in self.all_grades)


SWEDISH_SCALE = GradeScale(
    name=DEFAULT_SCALE_NAME,
    grades=("F", "E", "D", "D+", "C", "C+", "B", "A"),
    priors=(0.02, 0.08, 0.15, 0.20, 0.25, 0.15, 0.10, 0.05),
    minus_grades=("E", "D", "C", "B", "A"),
    plus_grades=("E", "B"),
)
ENG5_SCALE = GradeScale(
    name="eng5_np_legacy_9_step",
    grades=("F+", "E-", "E+", "D-", "D+", "C-", "C+", "B", "A"),
    priors=(1 / 9,) * 9,
    below_lowest_grade="F",
)
NATIONAL_SCALE = GradeScale(
    name="eng5_np_national_9_step",
    grades=tuple(str(step) for step in range(1, 10)),
    priors=(1 / 9,) * 9,
    below_lowest_grade="0",
)
GRADE_SCALES: dict[str, GradeScale] = {
    scale.name: scale for scale in (SWEDISH_SCALE, ENG5_SCALE, NATIONAL_SCALE)
}

# The result event's normalized_score per letter grade; any other grade (F, U) scores 0.0.
NORMALIZED_SCORES: dict[str, float] = {
    "A": 1.00, "A-": 0.93, "B+": 0.87, "B": 0.80, "B-": 0.73, "C+": 0.67, "C": 0.60,
    "C-": 0.53, "D+": 0.47, "D": 0.40, "D-": 0.33, "E+": 0.27, "E": 0.20, "E-": 0.13,
    "F+": 0.07,
}  # fmt: skip


def scale_named(name: str | None) -> GradeScale:
    """The scale with this id; an unknown or missing id is `swedish_8_anchor`."""
    return GRADE_SCALES.get(name or DEFAULT_SCALE_NAME, SWEDISH_SCALE)


def normalized_score(grade: str) -> float:
    return NORMALIZED_SCORES.get(grade, 0.0)
