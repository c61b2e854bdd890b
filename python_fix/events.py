"""The three outbox rows a finalized batch publishes, built as production's dual event
publisher builds them, so each passes its consumer's contract.

- completion (CJAssessmentCompletedV1) on `huleedu.cj_assessment.completed.v1`, for ELS and BCS;
- result (AssessmentResultV1) on `huleedu.assessment.result.published.v1`, for RAS: every essay
  of the batch, anchors included (is_anchor true), ranked 1..n by BT score;
- resource (ResourceConsumptionV1) on `huleedu.resource.consumption.v1`, for entitlements:
  `cj_comparison` units over the student pairs.

Each row's `event_data` is the event envelope plus a top-level `topic` key, as the service's
outbox manager stores it. Nothing here carries essay text.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from python_fix.grade_scales import NO_GRADE, normalized_score

SOURCE_SERVICE = "cj_assessment_service"
SCHEMA_VERSION = 1
COMPLETED_TOPIC = "huleedu.cj_assessment.completed.v1"
RESULT_TOPIC = "huleedu.assessment.result.published.v1"
RESOURCE_TOPIC = "huleedu.resource.consumption.v1"
# The result row's event_type column is the event name, not its topic (production's publisher).
RESULT_EVENT_TYPE = "assessment.result.published"
RESOURCE_TYPE = "cj_comparison"
ASSESSMENT_METHOD = "cj_assessment"
LLM_TEMPERATURE = 0.1
DISTRIBUTION_GRADES = ("A", "B", "C", "D", "E", "F", "U")


@dataclass(frozen=True)
class RankedEssay:
    """One row of the batch's ranking (no essay text)."""

    els_essay_id: str
    rank: int
    bt_score: float | None
    is_anchor: bool


@dataclass(frozen=True)
class Grade:
    """A student's projected grade as the result event carries it."""

    letter_grade: str
    confidence_score: float
    confidence_label: str


@dataclass(frozen=True)
class BatchFacts:
    """What the events need to know about the batch being finalized."""

    cj_batch_id: int
    bos_batch_id: str
    correlation_id: uuid.UUID
    assignment_id: str | None
    course_code: str
    user_id: str
    org_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class OutboxRow:
    topic: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    event_data: dict[str, Any]


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as pydantic's JSON mode writes it; naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _row(
    topic: str,
    event_type: str,
    aggregate_type: str,
    aggregate_id: str,
    batch: BatchFacts,
    data: dict[str, Any],
    now: datetime,
) -> OutboxRow:
    envelope = {
        "event_id": str(uuid.uuid4()),
        "event_type": topic,
        "event_timestamp": _iso(now),
        "source_service": SOURCE_SERVICE,
        "schema_version": SCHEMA_VERSION,
        "correlation_id": str(batch.correlation_id),
        "data_schema_uri": None,
        "data": data,
        "metadata": {},
        "topic": topic,
    }
    return OutboxRow(topic, event_type, aggregate_type, aggregate_id, envelope)


def build_outbox_rows(
    batch: BatchFacts,
    ranking: list[RankedEssay],
    grades: dict[str, Grade],
    model: tuple[str, str],
    *,
    now: datetime | None = None,
) -> list[OutboxRow]:
    """The completion, result and resource rows, in production's write order."""
    now = now or datetime.now(UTC)
    students = [essay for essay in ranking if not essay.is_anchor]
    anchors = [essay for essay in ranking if essay.is_anchor]
    duration = round(max(0.0, (now - _as_utc(batch.created_at)).total_seconds()), 2)
    return [
        _row(COMPLETED_TOPIC, COMPLETED_TOPIC, "cj_batch", batch.bos_batch_id, batch,
             _completion_data(batch, students, now, duration), now),
        _row(RESULT_TOPIC, RESULT_EVENT_TYPE, "assessment_result", str(batch.cj_batch_id), batch,
             _result_data(batch, ranking, anchors, grades, model, now, duration), now),
        _row(RESOURCE_TOPIC, RESOURCE_TOPIC, "resource_consumption", batch.bos_batch_id, batch,
             _resource_data(batch, students, now), now),
    ]  # fmt: skip


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _completion_data(
    batch: BatchFacts, students: list[RankedEssay], now: datetime, duration: float
) -> dict[str, Any]:
    successful = [essay.els_essay_id for essay in students if essay.bt_score is not None]
    failed = [essay.els_essay_id for essay in students if essay.bt_score is None]
    return {
        "event_name": "cj_assessment.completed",
        "entity_id": batch.bos_batch_id,
        "entity_type": "batch",
        "parent_id": None,
        "timestamp": _iso(now),
        "status": "completed_successfully" if successful else "failed_critically",
        "system_metadata": {
            "entity_id": batch.bos_batch_id,
            "entity_type": "batch",
            "parent_id": None,
            "timestamp": _iso(now),
            "processing_stage": "completed",
            "started_at": _iso(batch.created_at),
            "completed_at": _iso(now),
            "event": "cj_assessment.completed",
            "error_info": {},
        },
        "cj_assessment_job_id": str(batch.cj_batch_id),
        "processing_summary": {
            "total_essays": len(students),
            "successful": len(successful),
            "failed": len(failed),
            "successful_essay_ids": successful,
            "failed_essay_ids": failed,
            "processing_time_seconds": duration,
            "single_essay_batch": len(students) == 1,
        },
    }


def _result_data(
    batch: BatchFacts,
    ranking: list[RankedEssay],
    anchors: list[RankedEssay],
    grades: dict[str, Grade],
    model: tuple[str, str],
    now: datetime,
    duration: float,
) -> dict[str, Any]:
    results = []
    for essay in ranking:
        grade = grades.get(essay.els_essay_id)
        letter = grade.letter_grade if grade else NO_GRADE
        results.append(
            {
                "essay_id": essay.els_essay_id,
                "normalized_score": normalized_score(letter),
                "letter_grade": letter,
                "confidence_score": grade.confidence_score if grade else 0.0,
                "confidence_label": grade.confidence_label if grade else "LOW",
                "bt_score": essay.bt_score if essay.bt_score is not None else 0.0,
                "rank": essay.rank,
                "is_anchor": essay.is_anchor,
                "display_name": f"ANCHOR GRADE {letter}" if essay.is_anchor else None,
            }
        )
    used_anchors = bool(anchors) and bool(grades)
    distribution: dict[str, int] = {}
    if anchors:
        counts = Counter(
            grades[a.els_essay_id].letter_grade if a.els_essay_id in grades else NO_GRADE
            for a in anchors
        )
        distribution = {grade: counts.get(grade, 0) for grade in DISTRIBUTION_GRADES}
    n = len(ranking)
    provider, model_name = model
    return {
        "event_name": RESULT_EVENT_TYPE,
        "entity_id": batch.bos_batch_id,
        "entity_type": "batch",
        "parent_id": None,
        "timestamp": _iso(now),
        "batch_id": batch.bos_batch_id,
        "cj_assessment_job_id": str(batch.cj_batch_id),
        "assignment_id": batch.assignment_id,
        "assessment_method": ASSESSMENT_METHOD,
        "model_used": model_name,
        "model_provider": provider,
        "model_version": None,
        "essay_results": results,
        "assessment_metadata": {
            "anchor_essays_used": len(anchors),
            "calibration_method": "anchor" if used_anchors else "default",
            "anchor_grade_distribution": distribution,
            "comparison_count": n * (n - 1) // 2,
            "processing_duration_seconds": duration,
            "llm_temperature": LLM_TEMPERATURE,
            "assignment_id": batch.assignment_id,
            "course_code": batch.course_code,
        },
        "assessed_at": _iso(now),
    }


def _resource_data(batch: BatchFacts, students: list[RankedEssay], now: datetime) -> dict:
    s = len(students)
    return {
        "event_name": "resource.consumption.reported",
        "entity_id": batch.bos_batch_id,
        "entity_type": "batch",
        "parent_id": None,
        "timestamp": _iso(now),
        "user_id": batch.user_id,
        "org_id": batch.org_id,
        "resource_type": RESOURCE_TYPE,
        "quantity": s * (s - 1) // 2,
        "service_name": SOURCE_SERVICE,
        "processing_id": str(batch.cj_batch_id),
        "consumed_at": _iso(now),
    }
