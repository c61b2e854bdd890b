"""The CJ service tables the patches read and write, as SQLAlchemy mapped classes: every column
as the service's migrations define it at head, so callers read the rows' attributes as they
read the service's own ORM rows (batch preparation reads `ProcessedEssay.current_bt_score`).

JSON columns are `json` (never `jsonb`) and are bound through SQLAlchemy's JSON type, so the
same statements run on asyncpg (the service's driver) and psycopg. Enum columns hold the upper
case labels, as the service's ORM stores them (`values_callable`).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    Uuid,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class CJBatchStatusEnum(enum.StrEnum):
    """`cj_batch_status_enum`, labels in database order."""

    PENDING = "PENDING"
    FETCHING_CONTENT = "FETCHING_CONTENT"
    PERFORMING_COMPARISONS = "PERFORMING_COMPARISONS"
    COMPLETE_STABLE = "COMPLETE_STABLE"
    COMPLETE_MAX_COMPARISONS = "COMPLETE_MAX_COMPARISONS"
    ERROR_PROCESSING = "ERROR_PROCESSING"
    ERROR_ESSAY_PROCESSING = "ERROR_ESSAY_PROCESSING"
    COMPLETE_INSUFFICIENT_ESSAYS = "COMPLETE_INSUFFICIENT_ESSAYS"
    COMPLETE_FORCED_RECOVERY = "COMPLETE_FORCED_RECOVERY"


class CJBatchStateEnum(enum.StrEnum):
    """`cj_batch_state_enum`, labels in database order."""

    INITIALIZING = "INITIALIZING"
    GENERATING_PAIRS = "GENERATING_PAIRS"
    WAITING_CALLBACKS = "WAITING_CALLBACKS"
    SCORING = "SCORING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# A nullable json column: Python None is SQL NULL, not the JSON value null.
NULLABLE_JSON = JSON(none_as_null=True)


def _labels(members: type[enum.Enum]) -> list[str]:
    return [member.value for member in members]


def _enum_type(members: type[enum.Enum], name: str) -> Enum:
    return Enum(members, name=name, values_callable=_labels, create_constraint=False)


class Base(DeclarativeBase):
    pass


class CJBatchUpload(Base):
    __tablename__ = "cj_batch_uploads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bos_batch_id: Mapped[str] = mapped_column(String(36))
    event_correlation_id: Mapped[str] = mapped_column(String(36))
    language: Mapped[str] = mapped_column(String(10))
    course_code: Mapped[str] = mapped_column(String(50))
    expected_essay_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[CJBatchStatusEnum] = mapped_column(
        _enum_type(CJBatchStatusEnum, "cj_batch_status_enum")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)
    processing_metadata: Mapped[dict[str, Any] | None] = mapped_column(NULLABLE_JSON)
    assignment_id: Mapped[str | None] = mapped_column(String(100))
    user_id: Mapped[str | None] = mapped_column(String(255))
    org_id: Mapped[str | None] = mapped_column(String(255))


class CJBatchState(Base):
    __tablename__ = "cj_batch_states"

    batch_id: Mapped[int] = mapped_column(ForeignKey("cj_batch_uploads.id"), primary_key=True)
    state: Mapped[CJBatchStateEnum] = mapped_column(
        _enum_type(CJBatchStateEnum, "cj_batch_state_enum")
    )
    total_comparisons: Mapped[int] = mapped_column(Integer)
    submitted_comparisons: Mapped[int] = mapped_column(Integer, server_default="0")
    completed_comparisons: Mapped[int] = mapped_column(Integer, server_default="0")
    failed_comparisons: Mapped[int] = mapped_column(Integer, server_default="0")
    last_activity_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    partial_scoring_triggered: Mapped[bool] = mapped_column(Boolean, server_default="false")
    completion_threshold_pct: Mapped[int] = mapped_column(Integer, server_default="95")
    current_iteration: Mapped[int] = mapped_column(Integer, server_default="0")
    processing_metadata: Mapped[dict[str, Any] | None] = mapped_column(NULLABLE_JSON)
    total_budget: Mapped[int | None] = mapped_column(Integer)


class ProcessedEssay(Base):
    """One row of `cj_processed_essays`; `updated_at` comes back from the database on every
    flush (eager defaults), so reading it never needs a lazy load on an AsyncSession."""

    __tablename__ = "cj_processed_essays"
    __mapper_args__ = {"eager_defaults": True}

    els_essay_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    cj_batch_id: Mapped[int] = mapped_column(ForeignKey("cj_batch_uploads.id"))
    text_storage_id: Mapped[str] = mapped_column(String(256))
    assessment_input_text: Mapped[str] = mapped_column(Text)
    current_bt_score: Mapped[float | None] = mapped_column(Float)
    comparison_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )
    processing_metadata: Mapped[dict[str, Any] | None] = mapped_column(NULLABLE_JSON)
    current_bt_se: Mapped[float | None] = mapped_column(Float)
    is_anchor: Mapped[bool] = mapped_column(Boolean, server_default="false")


class ComparisonPair(Base):
    __tablename__ = "cj_comparison_pairs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cj_batch_id: Mapped[int] = mapped_column(ForeignKey("cj_batch_uploads.id"))
    essay_a_els_id: Mapped[str] = mapped_column(ForeignKey("cj_processed_essays.els_essay_id"))
    essay_b_els_id: Mapped[str] = mapped_column(ForeignKey("cj_processed_essays.els_essay_id"))
    prompt_text: Mapped[str] = mapped_column(Text)
    winner: Mapped[str | None] = mapped_column(String(20))
    confidence: Mapped[float | None] = mapped_column(Float)
    justification: Mapped[str | None] = mapped_column(Text)
    raw_llm_response: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_correlation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    error_timestamp: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error_service: Mapped[str | None] = mapped_column(String(100))
    error_details: Mapped[dict[str, Any] | None] = mapped_column(NULLABLE_JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    processing_metadata: Mapped[dict[str, Any] | None] = mapped_column(NULLABLE_JSON)
    request_correlation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pair_generation_mode: Mapped[str | None] = mapped_column(String(20))


class GradeProjection(Base):
    __tablename__ = "grade_projections"

    els_essay_id: Mapped[str] = mapped_column(
        ForeignKey("cj_processed_essays.els_essay_id"), primary_key=True
    )
    cj_batch_id: Mapped[int] = mapped_column(ForeignKey("cj_batch_uploads.id"), primary_key=True)
    primary_grade: Mapped[str] = mapped_column(String(4))
    confidence_score: Mapped[float] = mapped_column(Float)
    confidence_label: Mapped[str] = mapped_column(String(10))
    calculation_metadata: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    assessment_method: Mapped[str] = mapped_column(String(50), server_default="cj_assessment")
    model_used: Mapped[str | None] = mapped_column(String(100))
    model_provider: Mapped[str | None] = mapped_column(String(50))
    normalized_score: Mapped[float | None] = mapped_column(Float)
    population_prior: Mapped[float | None] = mapped_column(Float)
    grade_scale: Mapped[str] = mapped_column(String(50), server_default="swedish_8_anchor")


class EventOutbox(Base):
    __tablename__ = "event_outbox"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    aggregate_id: Mapped[str] = mapped_column(String(255))
    aggregate_type: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(255))
    event_data: Mapped[dict[str, Any]] = mapped_column(JSON)
    event_key: Mapped[str | None] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retry_count: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
