"""The three outbox rows a finalized batch publishes, built as production's dual event
publisher builds them, so each passes its consumer's contract.

- completion (CJAssessmentCompletedV1) on `huleedu.cj_assessment.completed.v1`, for ELS and BCS;
- result (AssessmentResultV1) on `huleedu.assessment.result.published.v1`, for RAS: every essay
  of the batch, anchors included (is_anchor true), ranked 1..n by BT score;
- resource (ResourceConsumptionV1) on `huleedu.resource.consumption.v1`, for entitlements:
  `cj_comparison` units over the student pairs;
- failure (CJAssessmentFailedV1) on `huleedu.cj_assessment.failed.v1`, for `finalize_failure`:
  status `failed_critically`, stage `failed`, error_info `{reason, details}`, the caller's
  correlation id.

Each row's `event_data` is the event envelope plus a top-level `topic` key, as the service's
outbox manager stores it. Nothing here carries essay text. `wake_relay` wakes the outbox relay
(Redis `LPUSH outbox:wake:<service> wake`) once the rows are committed.
"""

from __future__ import annotations

import logging
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
FAILED_TOPIC = "huleedu.cj_assessment.failed.v1"
# The result row's event_type column is the event name, not its topic (production's publisher).
RESULT_EVENT_TYPE = "assessment.result.published"
RESOURCE_TYPE = "cj_comparison"
ASSESSMENT_METHOD = "cj_assessment"
LLM_TEMPERATURE = 0.1
DISTRIBUTION_GRADES = ("A", "B", "C", "D", "E", "F", "U")
WAKE_KEY_PREFIX = "outbox:wake:"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """How production's publisher stores an event of one topic."""

    event_type: str  # the event_type column
    aggregate_type: str
    aggregate_id_field: str  # the data field that is the aggregate id


ROUTES: dict[str, Route] = {
    COMPLETED_TOPIC: Route(COMPLETED_TOPIC, "cj_batch", "entity_id"),
    RESULT_TOPIC: Route(RESULT_EVENT_TYPE, "assessment_result", "cj_assessment_job_id"),
    RESOURCE_TOPIC: Route(RESOURCE_TOPIC, "resource_consumption", "entity_id"),
    FAILED_TOPIC: Route(FAILED_TOPIC, "cj_batch", "entity_id"),
}


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
    """One event_outbox row: its columns, and `event_data` as stored (envelope + `topic`)."""

    topic: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    event_data: dict[str, Any]

    def envelope(self) -> Envelope:
        """The event envelope, as the service's OutboxManager takes it."""
        return Envelope({k: v for k, v in self.event_data.items() if k != "topic"})


@dataclass(frozen=True)
class Envelope:
    """An EventEnvelope already in JSON form, with what the OutboxManager reads of one:
    `model_dump(mode="json")`, `metadata` (a `partition_key` there overrides the event key)
    and the envelope's header fields."""

    document: dict[str, Any]

    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        return dict(self.document)

    @property
    def metadata(self) -> dict[str, Any] | None:
        return self.document.get("metadata")

    @property
    def correlation_id(self) -> uuid.UUID:
        return uuid.UUID(self.document["correlation_id"])

    @property
    def event_id(self) -> uuid.UUID:
        return uuid.UUID(self.document["event_id"])

    @property
    def event_type(self) -> str:
        return self.document["event_type"]

    @property
    def event_timestamp(self) -> str:
        return self.document["event_timestamp"]

    @property
    def source_service(self) -> str:
        return self.document["source_service"]

    @property
    def schema_version(self) -> int:
        return self.document["schema_version"]


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as pydantic's JSON mode writes it; naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _row(
    topic: str,
    batch: BatchFacts,
    data: dict[str, Any],
    now: datetime,
    correlation_id: uuid.UUID | None = None,
) -> OutboxRow:
    envelope = {
        "event_id": str(uuid.uuid4()),
        "event_type": topic,
        "event_timestamp": _iso(now),
        "source_service": SOURCE_SERVICE,
        "schema_version": SCHEMA_VERSION,
        "correlation_id": str(correlation_id or batch.correlation_id),
        "data_schema_uri": None,
        "data": data,
        "metadata": {},
        "topic": topic,
    }
    route = ROUTES[topic]
    aggregate_id = str(data[route.aggregate_id_field])
    return OutboxRow(topic, route.event_type, route.aggregate_type, aggregate_id, envelope)


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
        _row(COMPLETED_TOPIC, batch, _completion_data(batch, students, now, duration), now),
        _row(RESULT_TOPIC, batch,
             _result_data(batch, ranking, anchors, grades, model, now, duration), now),
        _row(RESOURCE_TOPIC, batch, _resource_data(batch, students, now), now),
    ]  # fmt: skip


def build_failure_row(
    batch: BatchFacts,
    correlation_id: uuid.UUID,
    reason: str,
    details: dict[str, Any] | None,
    *,
    now: datetime | None = None,
) -> OutboxRow:
    """The failure row `finalize_failure` writes, with the caller's correlation id."""
    now = now or datetime.now(UTC)
    data = {
        "event_name": "cj_assessment.failed",
        "entity_id": batch.bos_batch_id,
        "entity_type": "batch",
        "parent_id": None,
        "timestamp": _iso(now),
        "status": "failed_critically",
        "system_metadata": {
            "entity_id": batch.bos_batch_id,
            "entity_type": "batch",
            "parent_id": None,
            "timestamp": _iso(now),
            "processing_stage": "failed",
            "started_at": _iso(batch.created_at),
            "completed_at": _iso(now),
            "event": "cj_assessment.failed",
            "error_info": {"reason": reason, "details": details or {}},
        },
        "cj_assessment_job_id": str(batch.cj_batch_id),
    }
    return _row(FAILED_TOPIC, batch, data, now, correlation_id)


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


async def wake_relay(outbox_manager: Any, service_name: str) -> None:
    """`LPUSH outbox:wake:<service_name> wake` on the outbox manager's Redis client (its
    `redis_client`, production's attribute name), if it has one. A failed wake-up is logged,
    never raised: the relay finds the rows on its next poll anyway."""
    redis_client = getattr(outbox_manager, "redis_client", None)
    if redis_client is None:
        return
    service = getattr(outbox_manager, "service_name", None) or service_name
    try:
        await redis_client.lpush(f"{WAKE_KEY_PREFIX}{service}", "wake")
    except Exception as exc:
        logger.warning(
            "outbox relay wake-up failed (%s); the relay finds the rows on its next poll",
            type(exc).__name__,
            extra={"service": service},
        )
