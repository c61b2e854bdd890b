"""The project's own implementations of the finalizer's collaborators, with production's
interfaces, and `default_collaborators(session_provider)`: the seven keyword arguments that,
with the session provider, construct `BatchFinalizer` outside the service (the ENG5 runner,
`cj-health eng5 finalize`, the bench, the sync adapter). In the service, production's own
collaborators are passed instead.

- `PostgreSQLCJBatchRepository`, `PostgreSQLCJComparisonRepository`: the methods the finalizer
  calls, on the caller's AsyncSession; they flush at most and never commit.
- `OutboxManager`: `publish_to_outbox(aggregate_type, aggregate_id, event_type, event_data,
  topic, message_key=None, headers=None, session=None)` stores the envelope plus a top-level
  `topic` key (and `headers` when given), event_key = message_key or aggregate_id unless the
  envelope's metadata has a `partition_key`. Without a session the row is committed in its own
  session and the relay woken; with one the row joins that transaction and the transaction's
  owner wakes the relay after its commit (`notify_relay_worker`), so the relay never wakes to
  rows it cannot see yet. Waking is `LPUSH outbox:wake:<service_name> wake` on Redis when a
  client is given; a failed wake-up is logged, never raised (the relay also polls).
- `CJEventPublisher(outbox_manager, settings)`: the four publish methods of production's
  CJEventPublisherProtocol, one outbox row each with production's columns.
- `Settings`: the settings the finalizer reads, named as the service's settings are.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from python_fix import events
from python_fix.models import (
    CJBatchState,
    CJBatchStateEnum,
    CJBatchStatusEnum,
    CJBatchUpload,
    ComparisonPair,
    EventOutbox,
)
from python_fix.projector import GradeProjector
from python_fix.repository import PostgreSQLCJEssayRepository

SERVICE_NAME = events.SOURCE_SERVICE


class SessionProvider(Protocol):
    def session(self) -> AbstractAsyncContextManager[AsyncSession]: ...


@dataclass(frozen=True)
class Settings:
    """The service settings the finalizer reads: the model named when no pair names one."""

    SERVICE_NAME: str = SERVICE_NAME
    DEFAULT_LLM_PROVIDER: str = "openai"
    DEFAULT_LLM_MODEL: str = "gpt-5.1"


def label(value: Any) -> str:
    """An enum member's value, or the value itself, as text."""
    return str(getattr(value, "value", value))


class PostgreSQLCJBatchRepository:
    async def get_cj_batch_upload(
        self, session: AsyncSession, cj_batch_id: int
    ) -> CJBatchUpload | None:
        return await session.get(CJBatchUpload, cj_batch_id, populate_existing=True)

    async def get_batch_state(self, session: AsyncSession, batch_id: int) -> CJBatchState | None:
        return await session.get(CJBatchState, batch_id, populate_existing=True)

    async def get_batch_state_for_update(
        self, session: AsyncSession, batch_id: int, for_update: bool = False
    ) -> CJBatchState | None:
        return await session.get(
            CJBatchState, batch_id, populate_existing=True, with_for_update=for_update or None
        )

    async def update_cj_batch_status(
        self, session: AsyncSession, cj_batch_id: int, status: Any
    ) -> None:
        upload = await self.get_cj_batch_upload(session, cj_batch_id)
        if upload is None:
            raise ValueError(f"CJ batch {cj_batch_id} does not exist")
        upload.status = CJBatchStatusEnum(label(status))
        upload.updated_at = datetime.now(UTC).replace(tzinfo=None)
        await session.flush()

    async def update_batch_state(self, session: AsyncSession, batch_id: int, state: Any) -> None:
        batch_state = await self.get_batch_state(session, batch_id)
        if batch_state is None:
            raise ValueError(f"CJ batch {batch_id} has no state row")
        batch_state.state = CJBatchStateEnum(label(state))
        batch_state.last_activity_at = datetime.now(UTC)
        await session.flush()


class PostgreSQLCJComparisonRepository:
    async def get_valid_comparisons_for_batch(
        self, session: AsyncSession, batch_id: int
    ) -> list[ComparisonPair]:
        """The batch's judged pairs (winner essay_a or essay_b), by id."""
        rows = await session.scalars(
            select(ComparisonPair)
            .where(
                ComparisonPair.cj_batch_id == batch_id,
                ComparisonPair.winner.in_(("essay_a", "essay_b")),
            )
            .order_by(ComparisonPair.id)
        )
        return list(rows)


class OutboxManager:
    def __init__(
        self,
        session_provider: SessionProvider,
        redis_client: Any = None,
        service_name: str = SERVICE_NAME,
    ) -> None:
        self.session_provider = session_provider
        self.redis_client = redis_client
        self.service_name = service_name

    async def publish_to_outbox(
        self,
        aggregate_type: str,
        aggregate_id: str,
        event_type: str,
        event_data: Any,
        topic: str,
        message_key: str | None = None,
        headers: dict[str, str] | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        document = event_data.model_dump(mode="json")
        document["topic"] = topic
        if headers:
            document["headers"] = headers
        metadata = getattr(event_data, "metadata", None) or {}
        row = EventOutbox(
            id=uuid.uuid4(),
            aggregate_id=aggregate_id,
            aggregate_type=aggregate_type,
            event_type=event_type,
            event_data=document,
            event_key=metadata.get("partition_key", message_key or aggregate_id),
            topic=topic,
        )
        if session is not None:
            session.add(row)
            await session.flush()
            return
        async with self.session_provider.session() as own:
            own.add(row)
            await own.commit()
        await self.notify_relay_worker()

    async def notify_relay_worker(self) -> None:
        await events.wake_relay(self, self.service_name)


class CJEventPublisher:
    """Production's CJEventPublisherProtocol over the outbox manager; each method writes one
    row, committed on its own, as production's publisher does."""

    def __init__(self, outbox_manager: OutboxManager, settings: Settings) -> None:
        self.outbox_manager = outbox_manager
        self.settings = settings

    async def publish_assessment_completed(self, completion_data: Any, correlation_id) -> None:
        await self._publish(completion_data, events.COMPLETED_TOPIC)

    async def publish_assessment_failed(self, failure_data: Any, correlation_id) -> None:
        await self._publish(failure_data, events.FAILED_TOPIC)

    async def publish_assessment_result(self, result_data: Any, correlation_id) -> None:
        await self._publish(result_data, events.RESULT_TOPIC)

    async def publish_resource_consumption(self, resource_event: Any, correlation_id) -> None:
        await self._publish(resource_event, events.RESOURCE_TOPIC)

    async def _publish(self, envelope: Any, topic: str) -> None:
        route = events.ROUTES[topic]
        data = envelope.model_dump(mode="json")["data"]
        aggregate_id = str(data.get(route.aggregate_id_field) or envelope.correlation_id)
        await self.outbox_manager.publish_to_outbox(
            aggregate_type=route.aggregate_type,
            aggregate_id=aggregate_id,
            event_type=route.event_type,
            event_data=envelope,
            topic=topic,
        )


def default_collaborators(
    session_provider: SessionProvider,
    *,
    redis_client: Any = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The seven collaborators besides the session provider: `BatchFinalizer(session_provider=p,
    **default_collaborators(p))`. `redis_client` (an async Redis client) wakes the outbox
    relay after each commit; without one the relay finds the rows on its next poll."""
    settings = settings or Settings()
    manager = OutboxManager(session_provider, redis_client, settings.SERVICE_NAME)
    return {
        "batch_repository": PostgreSQLCJBatchRepository(),
        "comparison_repository": PostgreSQLCJComparisonRepository(),
        "essay_repository": PostgreSQLCJEssayRepository(),
        "event_publisher": CJEventPublisher(manager, settings),
        "content_client": None,
        "settings": settings,
        "grade_projector": GradeProjector(session_provider=session_provider),
    }
