"""Bradley–Terry scores and production's grade projection (python_fix.scoring), as pure
functions: no database. Expected values are worked out by hand from the rules in the module
docstring (production's grade projector)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from python_fix import scoring
from python_fix.grade_scales import ENG5_SCALE, GRADE_SCALES, SWEDISH_SCALE
from python_fix.scoring import Calibration, GradeParameters

pytestmark = pytest.mark.unit
SEED = Path(__file__).parents[2] / "seeds" / "cj_grade_scales.csv"


# --- Bradley–Terry -----------------------------------------------------------------------


def test_bt_ranks_essays_by_their_wins():
    ids = ["low", "mid", "high"]
    outcomes = [("high", "mid")] * 3 + [("mid", "low")] * 3 + [("high", "low")] * 3
    outcomes += [("mid", "high"), ("low", "mid")]
    scores = scoring.fit_bradley_terry(ids, outcomes)
    assert scores["low"].score < scores["mid"].score < scores["high"].score
    assert abs(sum(s.score for s in scores.values())) < 1e-9
    assert [scores[i].comparison_count for i in ids] == [7, 8, 7]
    assert all(0 < scores[i].se <= scoring.SE_CAP for i in ids)


def test_an_essay_without_comparisons_gets_the_se_cap():
    scores = scoring.fit_bradley_terry(["a", "b", "c"], [("a", "b"), ("b", "a")])
    assert scores["c"].se == scoring.SE_CAP and scores["c"].comparison_count == 0


# --- calibration ---------------------------------------------------------------------------


def test_calibration_needs_two_distinct_scale_grades():
    assert scoring.calibrate(ENG5_SCALE, [("B", 0.1), ("B", 0.3)]) is None
    assert scoring.calibrate(ENG5_SCALE, [("B", 0.1), ("Q", 0.3)]) is None  # not a scale grade
    assert scoring.calibrate(ENG5_SCALE, [("B", 0.1), ("A", 0.3)]) is not None


def test_calibration_per_grade_follows_the_anchor_count():
    """Swedish, 8 grades. B: 3 anchors (empirical); A: 1 anchor (blended, weight 1/3);
    C: 2 anchors (weight 2/3); the rest none (expected position)."""
    anchors = [("B", 1.0), ("B", 1.2), ("B", 1.4), ("A", 2.0), ("C", 0.5), ("C", 0.7)]
    calibration = scoring.calibrate(SWEDISH_SCALE, anchors)
    pooled = float(np.var([score for _, score in anchors]))
    assert calibration.pooled_variance == pytest.approx(pooled)
    b, a, c = (calibration.grades[g] for g in ("B", "A", "C"))
    assert (b.mean, b.variance, b.anchors) == (pytest.approx(1.2), pytest.approx(0.08 / 3), 3)
    assert a.mean == pytest.approx(2.0 / 3 + (2 / 3) * (7.5 / 8))
    assert a.variance == pytest.approx(pooled * 3)
    assert c.mean == pytest.approx((2 / 3) * 0.6 + (1 / 3) * (4.5 / 8))
    assert c.variance == pytest.approx(pooled * 1.5)
    # Already increasing, so the isotonic fit keeps them. F has no anchor: its expected
    # position, twice the pooled variance.
    assert calibration.grades["F"].mean == pytest.approx(0.5 / 8)
    assert calibration.grades["F"].variance == pytest.approx(pooled * 2)


def test_the_variance_floor():
    calibration = scoring.calibrate(ENG5_SCALE, [("B", 1.0)] * 3 + [("A", 2.0)] * 3)
    assert calibration.grades["B"].variance == scoring.VARIANCE_FLOOR


def test_means_are_made_increasing_and_bands_meet_at_midpoints():
    # E- anchors scored far below F+: the isotonic fit pools them (unweighted) into one mean.
    anchors = [("F+", 0.0)] * 3 + [("E-", -3.0)] * 3 + [("A", 5.0)] * 3
    calibration = scoring.calibrate(ENG5_SCALE, anchors)
    means = [calibration.grades[g].mean for g in ENG5_SCALE.grades]
    assert means == sorted(means)
    assert means[0] == means[1] == pytest.approx(-1.5)
    bands = [calibration.boundaries[g] for g in ENG5_SCALE.grades]
    assert bands[0][0] == -math.inf and bands[-1][1] == math.inf
    for i in range(len(bands) - 1):
        assert bands[i][1] == bands[i + 1][0] == pytest.approx((means[i] + means[i + 1]) / 2)


# --- probabilities, final grade, confidence ------------------------------------------------


def _calibration(scale, means, variance=0.25) -> Calibration:
    """A calibration with the given means (lowest grade first) and one variance."""
    grades = {g: GradeParameters(m, variance, 3) for g, m in zip(scale.grades, means, strict=True)}
    last = len(means) - 1
    boundaries = {
        g: (-math.inf if i == 0 else (means[i - 1] + means[i]) / 2,
            math.inf if i == last else (means[i] + means[i + 1]) / 2)
        for i, g in enumerate(scale.grades)
    }  # fmt: skip
    return Calibration(SWEDISH_SCALE if scale is SWEDISH_SCALE else scale, grades, boundaries,
                       variance)  # fmt: skip


SWEDISH = _calibration(SWEDISH_SCALE, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])


def test_probability_is_zero_outside_the_band_holding_the_score():
    probabilities = scoring.grade_probabilities(SWEDISH, 2.2, 0.3)
    assert probabilities == {g: (1.0 if g == "D" else 0.0) for g in SWEDISH_SCALE.grades}
    # On a boundary two bands hold the score: Gaussian density times prior decides.
    edge = scoring.grade_probabilities(SWEDISH, 2.5, 0.3)
    assert {g for g, p in edge.items() if p > 0} == {"D", "D+"}
    # Equal distances: the priors (D .15, D+ .20) split it.
    assert edge["D+"] == pytest.approx(0.20 / 0.35) and edge["D"] == pytest.approx(0.15 / 0.35)


@pytest.mark.parametrize(
    ("score", "grade"),
    [
        (-9.0, "F"), (0.4, "F"),  # F stays, even at the band's edge
        (0.55, "E-"), (1.0, "E"), (1.4, "E+"),  # E band 0.5..1.5
        (1.6, "D-"), (2.3, "D"),  # D has a minus grade, no plus grade
        (2.55, "D+"), (3.45, "D+"),  # D+ stays
        (3.6, "C-"), (4.45, "C"),  # C: minus only
        (4.55, "C+"), (5.45, "C+"),  # C+ stays
        (5.6, "B-"), (6.0, "B"), (6.4, "B+"),
        (6.6, "A"), (99.0, "A"),  # A's band is unbounded: r = 0.5, never A-
    ],
)  # fmt: skip
def test_swedish_minus_and_plus_grades(score, grade):
    assert scoring.project(SWEDISH, score, 0.2).primary_grade == grade


def test_below_the_lowest_grade_on_scales_that_have_one():
    eng5 = _calibration(ENG5_SCALE, [float(i) for i in range(9)], variance=0.04)
    # F+ mean 0, std 0.2: below -0.4 is F; the F+ band has no minus or plus grades.
    assert scoring.project(eng5, -0.39, 0.1).primary_grade == "F+"
    below = scoring.project(eng5, -0.41, 0.1)
    assert (below.primary_grade, below.primary_anchor_grade) == ("F", "F+")
    assert scoring.project(eng5, 3.2, 0.1).primary_grade == "D-"
    # Swedish has no below-lowest grade.
    assert scoring.project(SWEDISH, -50.0, 0.1).primary_grade == "F"


@pytest.mark.parametrize(
    ("se", "score", "label"),
    [
        (0.1, 1.0, "HIGH"),
        (0.5, math.sqrt(0.8), "HIGH"),
        (1.0, math.sqrt(0.6), "MID"),  # 0.77 would be HIGH: capped at MID
        (1.49, math.sqrt(0.6), "MID"),
        (1.5, math.sqrt(0.3), "LOW"),  # 0.55 would be MID: capped at LOW
        (2.0, math.sqrt(0.3), "LOW"),
    ],
)
def test_confidence_from_entropy_and_se(se, score, label):
    certain = {g: (1.0 if g == "C" else 0.0) for g in SWEDISH_SCALE.grades}
    assert scoring.confidence(certain, se) == (pytest.approx(score), label)


def test_confidence_falls_with_entropy():
    split = {g: 0.0 for g in SWEDISH_SCALE.grades} | {"D": 0.5, "D+": 0.5}
    # H = ln 2 / ln 8 = 1/3, so c = 2/3.
    assert scoring.confidence(split, 0.1) == (pytest.approx(math.sqrt(2 / 3)), "HIGH")
    uniform = {g: 1 / 8 for g in SWEDISH_SCALE.grades}
    assert scoring.confidence(uniform, 0.1) == (pytest.approx(0.0), "LOW")


def test_a_projection_carries_the_prior_of_its_primary_anchor_grade():
    projection = scoring.project(SWEDISH, 0.55, 0.2)
    assert (projection.primary_grade, projection.primary_anchor_grade) == ("E-", "E")
    assert projection.population_prior == 0.08
    assert projection.probabilities["E"] == 1.0


def test_the_first_grade_wins_a_tie():
    eng5 = _calibration(ENG5_SCALE, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    # 0.5 is on the F+/E- boundary, equally far from both means, with equal priors.
    projection = scoring.project(eng5, 0.5, 0.2)
    assert projection.probabilities["F+"] == projection.probabilities["E-"] == 0.5
    assert projection.primary_anchor_grade == "F+"


# --- the scales the monitoring checks projections against ----------------------------------


def test_the_monitorings_scale_seed_lists_every_grade_a_projection_can_carry():
    with SEED.open() as seed:
        seeded: dict[str, set[str]] = {}
        for row in csv.DictReader(seed):
            seeded.setdefault(row["grade_scale"], set()).add(row["grade"])
    assert seeded == {name: set(scale.all_grades) for name, scale in GRADE_SCALES.items()}
