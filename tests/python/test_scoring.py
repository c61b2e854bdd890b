"""The scoring maths of the finalizer (python_fix.scoring) beyond grade projection: the BT
scale's centre and symmetry, entropy's bounds, the confidence bands."""

from __future__ import annotations

import math

import pytest

from python_fix.scoring import (
    CONFIDENCE_HIGH,
    CONFIDENCE_MID,
    confidence_label,
    fit_bradley_terry,
    normalised_entropy,
)

pytestmark = pytest.mark.unit


def test_bt_scores_are_centred_on_zero() -> None:
    outcomes = [("a", "b"), ("a", "c"), ("b", "c"), ("a", "b"), ("c", "b")]
    scores = fit_bradley_terry(["a", "b", "c"], outcomes)
    assert math.isclose(sum(score.score for score in scores.values()), 0.0, abs_tol=1e-9)
    assert {essay: score.comparison_count for essay, score in scores.items()} == {
        "a": 3, "b": 4, "c": 3,
    }


def test_mirror_image_records_give_mirror_image_scores() -> None:
    scores = fit_bradley_terry(["a", "b"], [("a", "b"), ("a", "b"), ("b", "a")])
    assert scores["a"].score > 0
    assert math.isclose(scores["a"].score, -scores["b"].score, abs_tol=1e-9)
    assert math.isclose(scores["a"].se, scores["b"].se, rel_tol=1e-9)


def test_entropy_is_zero_when_certain_and_one_when_uniform() -> None:
    assert normalised_entropy({"A": 1.0, "B": 0.0, "C": 0.0}) == 0.0
    assert math.isclose(normalised_entropy({"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25}), 1.0)
    between = normalised_entropy({"A": 0.7, "B": 0.2, "C": 0.1})
    assert 0.0 < between < 1.0


@pytest.mark.parametrize(
    ("score", "label"),
    [(1.0, "HIGH"), (CONFIDENCE_HIGH, "HIGH"), (CONFIDENCE_HIGH - 1e-9, "MID"),
     (CONFIDENCE_MID, "MID"), (CONFIDENCE_MID - 1e-9, "LOW"), (0.0, "LOW")],
)
def test_confidence_bands_include_their_lower_bound(score: float, label: str) -> None:
    assert confidence_label(score) == label
