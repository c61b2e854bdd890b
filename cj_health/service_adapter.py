"""A thin synchronous adapter over python_fix's async service interfaces, for the CLI, the ENG5
runner and the bench: a session provider for a libpq URL (driver psycopg), and
`SyncBatchFinalizer`, which runs `BatchFinalizer.finalize_scoring` on its own event loop.

There is no second copy of the finalizer's logic here: every call goes through
`python_fix.finalizer.BatchFinalizer`. Database errors come out as psycopg errors, like the rest
of cj_health, not wrapped in SQLAlchemy's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from python_fix.finalizer import (
    BatchFinalizer,
    FinalizationResult,
    FinalizerSettings,
    check_fail_at,
)

APPLICATION_NAME = "cj-finalizer"
T = TypeVar("T")


class DatabaseSessionProvider:
    """The service's SessionProviderProtocol for a libpq URL or conninfo string: each
    `session()` is a new AsyncSession on its own psycopg connection (no pool, so the provider
    lives only as long as one event loop)."""

    def __init__(self, url: str, *, application_name: str = APPLICATION_NAME) -> None:
        async def connect() -> psycopg.AsyncConnection:
            return await psycopg.AsyncConnection.connect(url, application_name=application_name)

        self._engine = create_async_engine(
            "postgresql+psycopg://", async_creator=connect, poolclass=NullPool
        )
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    async def dispose(self) -> None:
        await self._engine.dispose()


def run_with_sessions(
    url: str,
    work: Callable[[DatabaseSessionProvider], Awaitable[T]],
    *,
    application_name: str = APPLICATION_NAME,
) -> T:
    """Run `work(provider)` on a new event loop and return its result; psycopg errors unwrapped."""

    async def main() -> T:
        provider = DatabaseSessionProvider(url, application_name=application_name)
        try:
            return await work(provider)
        finally:
            await provider.dispose()

    try:
        return asyncio.run(main())
    except DBAPIError as exc:
        if isinstance(exc.orig, psycopg.Error):
            raise exc.orig from exc
        raise


class SyncBatchFinalizer:
    """`BatchFinalizer` for synchronous callers; the same seams (`fail_at`, `on_step`)."""

    def __init__(
        self,
        url: str,
        *,
        settings: FinalizerSettings | None = None,
        fail_at: str | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> None:
        self._url = url
        self._settings = settings
        self._seams: dict[str, Any] = {"fail_at": fail_at, "on_step": on_step}
        check_fail_at(fail_at)

    def finalize_scoring(
        self,
        cj_batch_id: int,
        *,
        correlation_id: uuid.UUID | None = None,
        completion_status: str | None = None,
        source: str = "cj-health",
    ) -> FinalizationResult:
        correlation = correlation_id or uuid.uuid4()

        async def finalize(provider: DatabaseSessionProvider) -> FinalizationResult:
            finalizer = BatchFinalizer(provider, self._settings, **self._seams)
            return await finalizer.finalize_scoring(
                cj_batch_id,
                correlation,
                {},
                completion_status=completion_status,
                source=source,
            )

        return run_with_sessions(self._url, finalize)
