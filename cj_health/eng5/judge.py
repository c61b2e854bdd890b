"""The mock LLM judge: prefers the essay of higher hidden quality, with seeded noise.

P(A wins) = logistic(STRENGTH x (quality A - quality B)), qualities in grade steps. The same
seed and the same sequence of comparisons give the same verdicts. Justifications are short
stock phrases and never quote an essay.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

# Log-odds per grade step. 2.5 makes a one-grade gap a 92% preference: a consistent judge
# that still errs on close essays.
JUDGE_STRENGTH = 2.5
JUDGE_MODEL = "mock-judge-v1"
JUDGE_PROVIDER = "mock"

_REASONS = (
    "Essay {w} develops its argument more clearly and with better structure.",
    "Essay {w} uses more precise vocabulary and more varied sentences.",
    "Essay {w} stays on topic and supports its points with examples.",
    "Essay {w} has fewer language errors and a clearer conclusion.",
)


@dataclass(frozen=True)
class Judgement:
    winner: str  # "essay_a" or "essay_b", as cj_comparison_pairs.winner stores it
    confidence: float  # how sure the judge is of the pair's order, in [0.5, 1]
    justification: str
    raw_response: str


class MockJudge:
    def __init__(self, seed: int, strength: float = JUDGE_STRENGTH) -> None:
        self._rng = np.random.default_rng(seed)
        self._strength = strength

    def compare(self, quality_a: float, quality_b: float) -> Judgement:
        p_a = 1.0 / (1.0 + math.exp(-self._strength * (quality_a - quality_b)))
        a_wins = bool(self._rng.random() < p_a)
        winner = "essay_a" if a_wins else "essay_b"
        confidence = round(max(p_a, 1.0 - p_a), 3)
        reason = _REASONS[int(self._rng.integers(len(_REASONS)))]
        justification = reason.format(w="A" if a_wins else "B")
        raw = json.dumps(
            {
                "winner": "Essay A" if a_wins else "Essay B",
                "confidence": confidence,
                "justification": justification,
            }
        )
        return Judgement(winner, confidence, justification, raw)
