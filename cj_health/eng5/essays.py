"""Generated ENG5 essays: short made-up texts (no real writing, no personal data) and a hidden
quality per essay that the mock judge sees and the CJ service does not.

Quality is measured in grade steps: an anchor of grade index k (F+ = 0 … A = 8) has quality
k; a student's quality is drawn uniformly from one grade below F+ to the top of A, and its
hidden grade is the nearest grade step (below F+: F). Hidden qualities and grades live only
in the runner's memory and its artefact, never in the database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from cj_health.eng5.anchors import ALL_GRADES, GRADES, AnchorReference

ROLE_ANCHOR = "anchor"
ROLE_STUDENT = "student"
ANCHOR_QUALITY_JITTER = 0.1
STUDENT_QUALITY_RANGE = (-1.5, len(GRADES) - 0.5)

_TOPICS = (
    "a journey by train",
    "the best season of the year",
    "a rule I would change at school",
    "why people keep pets",
    "a day without phones",
    "learning a new language",
)
_OPENINGS = (
    "In this text I will write about {topic}.",
    "Many people have opinions about {topic}.",
    "{Topic} is something everyone has met in some way.",
)
_PLAIN = (
    "It is good and I like it.",
    "Some people think it is bad.",
    "I think it is fun.",
    "My friend said it is ok.",
    "It can be hard sometimes.",
)
_DEVELOPED = (
    "On the one hand it gives us freedom, on the other hand it asks for responsibility.",
    "A clear example is how a small change in routine can alter a whole week.",
    "This matters because habits shape what we notice and what we ignore.",
    "Critics argue the opposite, yet their argument overlooks the long-term effects.",
    "Taken together, these points suggest a more balanced view is needed.",
)
_CLOSINGS = (
    "That is all.",
    "In conclusion, the question has no simple answer, but it deserves careful thought.",
    "To sum up, I have shown why this topic matters to young people today.",
)


@dataclass(frozen=True)
class GeneratedEssay:
    els_essay_id: str
    role: str
    text: str
    text_storage_id: str
    hidden_quality: float
    hidden_grade: str
    processing_metadata: dict


def grade_for_quality(quality: float) -> str:
    """The nearest grade step to `quality` (grade steps: F = -1, F+ = 0, …, A = 8)."""
    step = int(np.clip(round(quality), -1, len(GRADES) - 1))
    return ALL_GRADES[step + 1]


def essay_text(rng: np.random.Generator, quality: float) -> str:
    """A short made-up essay whose length and phrasing grow with quality."""
    topic = str(rng.choice(_TOPICS))
    level = float(np.clip((quality + 1.0) / (len(GRADES) + 1.0), 0.0, 1.0))
    sentences = [str(rng.choice(_OPENINGS)).format(topic=topic, Topic=topic.capitalize())]
    for _ in range(2 + int(level * 6)):
        pool = _DEVELOPED if rng.random() < level else _PLAIN
        sentences.append(str(rng.choice(pool)))
    sentences.append(_CLOSINGS[min(int(level * len(_CLOSINGS)), len(_CLOSINGS) - 1)])
    return " ".join(sentences)


def anchor_essays(
    rng: np.random.Generator, references: list[AnchorReference]
) -> list[GeneratedEssay]:
    """One essay per registered anchor, flagged as an anchor in its metadata."""
    essays = []
    for reference in references:
        quality = GRADES.index(reference.grade) + float(rng.normal(0.0, ANCHOR_QUALITY_JITTER))
        essays.append(
            GeneratedEssay(
                els_essay_id=f"ANCHOR_{reference.id}_{uuid.uuid4().hex[:8]}",
                role=ROLE_ANCHOR,
                text=essay_text(rng, quality),
                text_storage_id=reference.text_storage_id or f"eng5-anchors/{reference.id}",
                hidden_quality=quality,
                hidden_grade=reference.grade,
                processing_metadata={
                    "is_anchor": True,
                    "known_grade": reference.grade,
                    "anchor_ref_id": reference.id,
                    "anchor_label": reference.anchor_label,
                },
            )
        )
    return essays


def student_essays(rng: np.random.Generator, count: int) -> list[GeneratedEssay]:
    """`count` student essays with uuid ids and hidden qualities drawn from `rng`."""
    low, high = STUDENT_QUALITY_RANGE
    essays = []
    for _ in range(count):
        quality = float(rng.uniform(low, high))
        essay_id = str(uuid.uuid4())
        essays.append(
            GeneratedEssay(
                els_essay_id=essay_id,
                role=ROLE_STUDENT,
                text=essay_text(rng, quality),
                text_storage_id=f"eng5-students/{essay_id}",
                hidden_quality=quality,
                hidden_grade=grade_for_quality(quality),
                processing_metadata={"is_anchor": False},
            )
        )
    return essays
