"""Bradley–Terry scores and grade projection. Pure functions, no database.

BT: `choix.ilsr_pairwise(n, pairs, alpha=0.01)` over (winner, loser) index pairs, centred to
mean 0. Standard errors from the Fisher information (p(1-p) per comparison) with one reference
item removed, pseudo-inverted, capped at 2.0. Production reports SE 0 for its reference item; here
the reference is the essay scored closest to the centre (0), ties to the best-connected, and it
gets the median SE of the others instead. (A reference picked by connection alone fell on an
arbitrary essay when every essay had as many comparisons, i.e. by essay id order: an extreme
essay as reference inflated every SE, and the same seed gave a scale separation reliability of
0.66 or 0.86 by chance, measured on ENG5 batches.)

Projection is production's grade projector, step for step (given the same BT scores and SEs
it gives the same grades, confidences and probabilities):
- Preconditions: anchors of at least two distinct scale grades; otherwise no projection.
- Calibration, per scale grade: with 3 or more anchors their mean and (population) variance;
  with 1 or 2 anchors the mean blended with the grade's expected position (i + 0.5) / number
  of grades, weight n / 3, and the variance pooled * 3 / n; with none the expected position
  and pooled * 2. `pooled` is the (population) variance of all anchor scores. Variance floor
  0.01. The means get an (unweighted) isotonic increasing fit; a grade's band runs from
  the midpoint with the grade below to the midpoint with the grade above, -inf/+inf at the
  ends.
- Probabilities: 0 for a grade whose band does not hold the score; otherwise the Gaussian
  density at the score (variance: the grade's plus the essay's SE squared) times the scale's
  prior, normalised. The most probable grade (the first in scale order on a tie) is the
  primary anchor grade.
- Final grade: on a scale with minus/plus grades (Swedish), with r the score's relative
  position in the primary grade's band (0.5 when the band is unbounded), `<grade>-` when
  r < 0.25 and the grade has a minus grade, `<grade>+` when r > 0.75 and it has a plus grade.
  On a scale with a below-lowest grade, an essay in the lowest grade's band scoring below that
  grade's mean minus two standard deviations gets the below-lowest grade.
- Confidence: c = 1 - normalised entropy of the probabilities; the SE factor is 0.3 for an SE
  of 1.5 or more (label at most LOW), 0.6 from 1.0 (at most MID), 0.8 from 0.5, else 1.0;
  score = sqrt(c * factor); HIGH from 0.7, MID from 0.4, else LOW.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import choix
import numpy as np

from python_fix.grade_scales import GradeScale

BT_ALPHA = 0.01
SE_CAP = 2.0
MIN_ANCHORS_FOR_EMPIRICAL_MEAN = 3
VARIANCE_FLOOR = 0.01
CONFIDENCE_HIGH = 0.7
CONFIDENCE_MID = 0.4
MINUS_BELOW = 0.25
PLUS_ABOVE = 0.75
BELOW_LOWEST_STDS = 2.0
NEGLIGIBLE_PROBABILITY = 1e-10
# (SE at least, factor, the highest label allowed), largest SE first.
SE_CONFIDENCE_FACTORS = ((1.5, 0.3, "LOW"), (1.0, 0.6, "MID"), (0.5, 0.8, "HIGH"))
LABELS = ("LOW", "MID", "HIGH")


@dataclass(frozen=True)
class EssayScore:
    score: float
    se: float
    comparison_count: int


@dataclass(frozen=True)
class GradeProjection:
    primary_grade: str  # the final grade (minus/plus or below-lowest applied)
    primary_anchor_grade: str  # the most probable scale grade
    confidence_score: float
    confidence_label: str
    probabilities: dict[str, float]  # per scale grade
    population_prior: float  # the scale's prior of the primary anchor grade


@dataclass(frozen=True)
class GradeParameters:
    mean: float
    variance: float
    anchors: int


@dataclass(frozen=True)
class Calibration:
    """Per scale grade (lowest to highest): its distribution on the BT scale and its band."""

    scale: GradeScale
    grades: dict[str, GradeParameters]
    boundaries: dict[str, tuple[float, float]]
    pooled_variance: float

    @property
    def means(self) -> dict[str, float]:
        return {grade: params.mean for grade, params in self.grades.items()}


def fit_bradley_terry(
    essay_ids: Sequence[str], outcomes: Sequence[tuple[str, str]]
) -> dict[str, EssayScore]:
    """BT score, SE and comparison count per essay from (winner id, loser id) outcomes."""
    index = {essay_id: i for i, essay_id in enumerate(essay_ids)}
    n = len(essay_ids)
    pairs = [(index[winner], index[loser]) for winner, loser in outcomes]
    counts = np.zeros(n, dtype=int)
    for winner, loser in pairs:
        counts[winner] += 1
        counts[loser] += 1
    if n == 0:
        return {}
    if not pairs or n < 2:
        theta = np.zeros(n)
        se = np.full(n, SE_CAP)
    else:
        theta = np.asarray(choix.ilsr_pairwise(n, pairs, alpha=BT_ALPHA), dtype=float)
        theta = theta - theta.mean()
        se = standard_errors(theta, pairs, counts)
    return {
        essay_id: EssayScore(float(theta[i]), float(se[i]), int(counts[i]))
        for essay_id, i in index.items()
    }


def standard_errors(
    theta: np.ndarray, pairs: Sequence[tuple[int, int]], counts: np.ndarray
) -> np.ndarray:
    """SEs from the Fisher information with the most central item as reference."""
    n = len(theta)
    info = np.zeros((n, n))
    for winner, loser in pairs:
        p = 1.0 / (1.0 + math.exp(-(theta[winner] - theta[loser])))
        weight = p * (1.0 - p)
        info[winner, winner] += weight
        info[loser, loser] += weight
        info[winner, loser] -= weight
        info[loser, winner] -= weight
    # The essay nearest the centre of the scale; among equals, the best connected.
    reference = min(range(n), key=lambda i: (round(abs(float(theta[i])), 9), -int(counts[i]), i))
    keep = [i for i in range(n) if i != reference]
    covariance = np.linalg.pinv(info[np.ix_(keep, keep)], rcond=1e-10)
    se = np.full(n, SE_CAP)
    variances = np.clip(np.diag(covariance), 0.0, None)
    se[keep] = np.sqrt(variances)
    se[reference] = float(np.median(se[keep])) if keep else SE_CAP
    se[counts == 0] = SE_CAP
    return np.minimum(se, SE_CAP)


def calibrate(scale: GradeScale, anchor_scores: Sequence[tuple[str, float]]) -> Calibration | None:
    """Grade distributions from (grade, BT score) anchors; None without anchors of two distinct
    scale grades. Anchors whose grade is not a scale grade are left out."""
    by_grade: dict[str, list[float]] = {}
    for grade, score in anchor_scores:
        if grade in scale.grades:
            by_grade.setdefault(grade, []).append(float(score))
    if len(by_grade) < 2:
        return None
    pooled = float(np.var([score for scores in by_grade.values() for score in scores]))
    means, variances, counts = [], [], []
    for i, grade in enumerate(scale.grades):
        scores = by_grade.get(grade, [])
        expected = (i + 0.5) / len(scale.grades)
        n = len(scores)
        if n >= MIN_ANCHORS_FOR_EMPIRICAL_MEAN:
            mean, variance = float(np.mean(scores)), float(np.var(scores))
        elif n > 0:
            weight = n / MIN_ANCHORS_FOR_EMPIRICAL_MEAN
            mean = weight * float(np.mean(scores)) + (1.0 - weight) * expected
            variance = pooled * MIN_ANCHORS_FOR_EMPIRICAL_MEAN / n
        else:
            mean, variance = expected, pooled * 2.0
        means.append(mean)
        variances.append(max(variance, VARIANCE_FLOOR))
        counts.append(n)
    monotone = _pool_adjacent_violators(means, [1.0] * len(means))
    grades = {
        grade: GradeParameters(monotone[i], variances[i], counts[i])
        for i, grade in enumerate(scale.grades)
    }
    last = len(scale.grades) - 1
    boundaries = {
        grade: (
            -math.inf if i == 0 else (monotone[i - 1] + monotone[i]) / 2.0,
            math.inf if i == last else (monotone[i] + monotone[i + 1]) / 2.0,
        )
        for i, grade in enumerate(scale.grades)
    }
    return Calibration(scale=scale, grades=grades, boundaries=boundaries, pooled_variance=pooled)


def grade_probabilities(calibration: Calibration, score: float, se: float) -> dict[str, float]:
    """P(grade) per scale grade for a BT score and SE (see the module docstring)."""
    log_probabilities: dict[str, float] = {}
    for grade, params in calibration.grades.items():
        lower, upper = calibration.boundaries[grade]
        prior = calibration.scale.prior(grade)
        if not lower <= score <= upper or prior <= 0:
            log_probabilities[grade] = -math.inf
            continue
        variance = params.variance + se**2
        log_likelihood = -0.5 * (
            math.log(2 * math.pi * variance) + (score - params.mean) ** 2 / variance
        )
        log_probabilities[grade] = log_likelihood + math.log(prior)
    top = max(log_probabilities.values())
    if top == -math.inf:  # no band holds the score (it is not a number): no information
        return {grade: 1.0 / len(log_probabilities) for grade in log_probabilities}
    weights = {grade: math.exp(value - top) for grade, value in log_probabilities.items()}
    total = sum(weights.values())
    return {grade: weight / total for grade, weight in weights.items()}


def final_grade(calibration: Calibration, primary: str, score: float) -> str:
    """The primary anchor grade with the scale's minus/plus or below-lowest rule applied."""
    scale = calibration.scale
    lower, upper = calibration.boundaries[primary]
    width = upper - lower
    position = (score - lower) / width if math.isfinite(width) and width > 0 else 0.5
    if primary in scale.minus_grades and position < MINUS_BELOW:
        return f"{primary}-"
    if primary in scale.plus_grades and position > PLUS_ABOVE:
        return f"{primary}+"
    if scale.below_lowest_grade and primary == scale.grades[0]:
        params = calibration.grades[primary]
        if score < params.mean - BELOW_LOWEST_STDS * math.sqrt(params.variance):
            return scale.below_lowest_grade
    return primary


def normalised_entropy(probabilities: Mapping[str, float]) -> float:
    """Shannon entropy over the non-negligible probabilities, divided by log(grades)."""
    present = [p for p in probabilities.values() if p > NEGLIGIBLE_PROBABILITY]
    if len(present) <= 1:
        return 0.0
    entropy = -sum(p * math.log(p) for p in present)
    return entropy / math.log(len(probabilities))


def confidence(probabilities: Mapping[str, float], se: float) -> tuple[float, str]:
    """(confidence score, label) from the probabilities' entropy and the essay's SE."""
    factor, cap = 1.0, "HIGH"
    for at_least, se_factor, highest in SE_CONFIDENCE_FACTORS:
        if se >= at_least:
            factor, cap = se_factor, highest
            break
    score = math.sqrt(max(0.0, 1.0 - normalised_entropy(probabilities)) * factor)
    label = confidence_label(score)
    return score, min(label, cap, key=LABELS.index)


def project(calibration: Calibration, score: float, se: float) -> GradeProjection:
    """The projection of one student essay with BT `score` and `se`."""
    probabilities = grade_probabilities(calibration, score, se)
    primary = max(probabilities, key=lambda grade: probabilities[grade])
    confidence_score, label = confidence(probabilities, se)
    return GradeProjection(
        primary_grade=final_grade(calibration, primary, score),
        primary_anchor_grade=primary,
        confidence_score=confidence_score,
        confidence_label=label,
        probabilities=probabilities,
        population_prior=calibration.scale.prior(primary),
    )


def confidence_label(confidence_score: float) -> str:
    if confidence_score >= CONFIDENCE_HIGH:
        return "HIGH"
    if confidence_score >= CONFIDENCE_MID:
        return "MID"
    return "LOW"


def _pool_adjacent_violators(values: Sequence[float], weights: Sequence[float]) -> list[float]:
    """The weighted non-decreasing fit closest to `values` (isotonic regression)."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for value, weight in zip(values, weights, strict=True):
        blocks.append([float(value), float(weight), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean2, weight2, length2 = blocks.pop()
            mean1, weight1, length1 = blocks.pop()
            total = weight1 + weight2
            blocks.append([(mean1 * weight1 + mean2 * weight2) / total, total, length1 + length2])
    fitted: list[float] = []
    for mean, _, length in blocks:
        fitted.extend([mean] * int(length))
    return fitted
