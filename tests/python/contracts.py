"""The event contracts of the CJ service's consumers, as pydantic models, and the outbox rows
that carry them.

Transcribed from the production service's common_core event models (EventEnvelope,
CJAssessmentCompletedV1, AssessmentResultV1, ResourceConsumptionV1, CJAssessmentFailedV1) and
its outbox publisher. Like production, no model sets `extra`: unknown keys are ignored.

Use `validate_outbox_row(row)` on every `event_outbox` row a test writes: it checks the row's
columns (topic, event_type, aggregate_type, aggregate_id, event_key) and parses its
`event_data` (the envelope plus the top-level `topic` key) against the data contract of its
topic. It raises `ContractViolation` naming the row and every failing field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, Field, ValidationError

COMPLETED_TOPIC = "huleedu.cj_assessment.completed.v1"
RESULT_TOPIC = "huleedu.assessment.result.published.v1"
RESOURCE_TOPIC = "huleedu.resource.consumption.v1"
FAILED_TOPIC = "huleedu.cj_assessment.failed.v1"
LETTER_GRADE_PATTERN = r"^([A-F][+-]?|U)$"
# The batch monitor's failure event stores this envelope event_type instead of the topic (the
# relay rebuilds the envelope from the event_type column, so consumers never see it).
MONITOR_FAILED_EVENT_TYPE = "cj_assessment.failed.v1"


def _now() -> datetime:
    return datetime.now(UTC)


class ProcessingEvent(StrEnum):
    """The event names the CJ service emits (a subset of production's ProcessingEvent)."""

    CJ_ASSESSMENT_COMPLETED = "cj_assessment.completed"
    CJ_ASSESSMENT_FAILED = "cj_assessment.failed"
    ASSESSMENT_RESULT_PUBLISHED = "assessment.result.published"
    RESOURCE_CONSUMPTION_REPORTED = "resource.consumption.reported"
    ELS_CJ_ASSESSMENT_REQUESTED = "els.cj_assessment.requested"


class BatchStatus(StrEnum):
    COMPLETED_SUCCESSFULLY = "completed_successfully"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    FAILED_CRITICALLY = "failed_critically"
    CANCELLED = "cancelled"


class EssayStatus(StrEnum):
    AWAITING_CJ_ASSESSMENT = "awaiting_cj_assessment"
    CJ_ASSESSMENT_PROCESSING_IN_PROGRESS = "cj_assessment_processing_in_progress"
    CJ_ASSESSMENT_SUCCESS = "cj_assessment_success"
    CJ_ASSESSMENT_FAILED = "cj_assessment_failed"


class ProcessingStage(StrEnum):
    PENDING = "pending"
    INITIALIZED = "initialized"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EventEnvelope(BaseModel):
    event_id: UUID = Field(default_factory=uuid4)
    event_type: str
    event_timestamp: datetime = Field(default_factory=_now)
    source_service: str
    schema_version: int = 1
    correlation_id: UUID = Field(default_factory=uuid4)
    data_schema_uri: str | None = None
    data: Any
    metadata: dict[str, Any] | None = None


class BaseEventData(BaseModel):
    event_name: ProcessingEvent
    entity_id: str | None = None
    entity_type: str | None = None
    parent_id: str | None = None
    timestamp: datetime = Field(default_factory=_now)


class SystemProcessingMetadata(BaseModel):
    entity_id: str
    entity_type: str
    parent_id: str | None = None
    timestamp: datetime = Field(default_factory=_now)
    processing_stage: ProcessingStage | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    event: str | None = None
    error_info: dict[str, Any] = Field(default_factory=dict)


class ProcessingUpdate(BaseEventData):
    status: EssayStatus | BatchStatus
    system_metadata: SystemProcessingMetadata


class CJAssessmentCompletedV1(ProcessingUpdate):
    event_name: ProcessingEvent = ProcessingEvent.CJ_ASSESSMENT_COMPLETED
    cj_assessment_job_id: str
    processing_summary: dict[str, Any]


class CJAssessmentFailedV1(ProcessingUpdate):
    event_name: ProcessingEvent = ProcessingEvent.CJ_ASSESSMENT_FAILED
    cj_assessment_job_id: str


class EssayResultV1(BaseModel):
    essay_id: str
    normalized_score: float = Field(ge=0.0, le=1.0)
    letter_grade: str = Field(pattern=LETTER_GRADE_PATTERN)
    confidence_score: float = Field(ge=0.0, le=1.0)
    confidence_label: Literal["HIGH", "MID", "LOW"]
    bt_score: float
    rank: int = Field(gt=0)
    is_anchor: bool = False
    feedback_uri: str | None = None
    metrics_uri: str | None = None
    display_name: str | None = None


class AssessmentResultV1(BaseEventData):
    event_name: ProcessingEvent = ProcessingEvent.ASSESSMENT_RESULT_PUBLISHED
    batch_id: str
    cj_assessment_job_id: str
    assignment_id: str | None = Field(default=None, max_length=100)
    assessment_method: str
    model_used: str
    model_provider: str
    model_version: str | None = None
    essay_results: list[EssayResultV1]
    assessment_metadata: dict[str, Any] = Field(default_factory=dict)
    assessed_at: datetime = Field(default_factory=_now)


class ResourceConsumptionV1(BaseEventData):
    event_name: ProcessingEvent = ProcessingEvent.RESOURCE_CONSUMPTION_REPORTED
    user_id: str
    org_id: str | None = None
    resource_type: str
    quantity: int = Field(ge=0)
    service_name: str
    processing_id: str
    consumed_at: datetime = Field(default_factory=_now)


class OutboxRoute(BaseModel):
    """How the publisher stores one kind of event: its columns and its data contract."""

    event_type_column: str
    aggregate_type: str
    aggregate_id_field: str
    data_model: type[BaseModel]


ROUTES: dict[str, OutboxRoute] = {
    COMPLETED_TOPIC: OutboxRoute(
        event_type_column=COMPLETED_TOPIC,
        aggregate_type="cj_batch",
        aggregate_id_field="entity_id",
        data_model=CJAssessmentCompletedV1,
    ),
    RESULT_TOPIC: OutboxRoute(
        event_type_column="assessment.result.published",
        aggregate_type="assessment_result",
        aggregate_id_field="cj_assessment_job_id",
        data_model=AssessmentResultV1,
    ),
    RESOURCE_TOPIC: OutboxRoute(
        event_type_column=RESOURCE_TOPIC,
        aggregate_type="resource_consumption",
        aggregate_id_field="entity_id",
        data_model=ResourceConsumptionV1,
    ),
    FAILED_TOPIC: OutboxRoute(
        event_type_column=FAILED_TOPIC,
        aggregate_type="cj_batch",
        aggregate_id_field="entity_id",
        data_model=CJAssessmentFailedV1,
    ),
}
OUTBOX_COLUMNS = (
    "aggregate_id", "aggregate_type", "event_type", "event_data", "event_key", "topic",
)  # fmt: skip


class ContractViolation(AssertionError):
    """An outbox row its consumers would reject; the message names every failing field."""


def parse_event_data(topic: str, event_data: Mapping[str, Any]) -> tuple[EventEnvelope, BaseModel]:
    """The envelope and the typed data of one outbox row's `event_data` (raises on failure)."""
    route = ROUTES.get(topic)
    if route is None:
        raise ContractViolation(f"topic {topic!r} is not one the CJ service publishes")
    envelope = EventEnvelope.model_validate(dict(event_data))
    return envelope, route.data_model.model_validate(envelope.data)


def validate_outbox_row(row: Mapping[str, Any]) -> None:
    """Check one `event_outbox` row (a mapping with at least OUTBOX_COLUMNS) as production's
    publisher writes it and its consumers read it; raise ContractViolation if anything fails."""
    topic = row["topic"]
    label = f"outbox row {row.get('id', '?')} (topic {topic})"
    route = ROUTES.get(topic)
    if route is None:
        raise ContractViolation(f"{label}: not a topic the CJ service publishes")
    event_data = row["event_data"]
    if not isinstance(event_data, Mapping):
        raise ContractViolation(f"{label}: event_data is not a JSON object")
    try:
        envelope, data = parse_event_data(topic, event_data)
    except ValidationError as exc:
        raise ContractViolation(f"{label}: {exc}") from None
    problems = []
    if event_data.get("topic") != topic:
        problems.append("event_data has no top-level 'topic' equal to the topic column")
    if envelope.event_type != topic and not (
        topic == FAILED_TOPIC and envelope.event_type == MONITOR_FAILED_EVENT_TYPE
    ):
        problems.append(f"envelope event_type {envelope.event_type!r} is not the topic")
    if envelope.source_service != "cj_assessment_service":
        problems.append(f"source_service {envelope.source_service!r}")
    if row["event_type"] != route.event_type_column:
        problems.append(f"event_type column {row['event_type']!r}, expected "
                        f"{route.event_type_column!r}")
    if row["aggregate_type"] != route.aggregate_type:
        problems.append(f"aggregate_type {row['aggregate_type']!r}")
    aggregate_id = str(getattr(data, route.aggregate_id_field) or envelope.correlation_id)
    if row["aggregate_id"] != aggregate_id:
        problems.append(f"aggregate_id {row['aggregate_id']!r}, expected {aggregate_id!r}")
    if row["event_key"] != row["aggregate_id"]:
        problems.append("event_key is not the aggregate_id")
    if problems:
        raise ContractViolation(f"{label}: " + "; ".join(problems))


def validate_outbox(conn: Any) -> int:
    """Validate every row of `event_outbox` on a psycopg connection; return how many."""
    cursor = conn.execute(
        "select id, aggregate_id, aggregate_type, event_type, event_data, event_key, topic "
        "from event_outbox order by created_at, id"
    )
    names = [column.name for column in cursor.description]
    rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    for row in rows:
        validate_outbox_row(row)
    return len(rows)
