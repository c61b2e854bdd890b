"""A thin synchronous adapter over python_fix's async service interfaces, for the CLI, the ENG5
runner and the bench: a session provider for a libpq URL on either driver the service may use
(psycopg, or asyncpg as production does), and `SyncBatchFinalizer`, which runs
`BatchFinalizer.finalize_scoring_result` on its own event loop.

There is no second copy of the finalizer's logic here: the finalizer is built as everywhere
outside the service, `BatchFinalizer(session_provider=p, **python_fix.default_collaborators(p))`.
On psycopg, database errors come out as psycopg errors, like the rest of cj_health, not wrapped
in SQLAlchemy's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo as pg_conninfo
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

import python_fix
from python_fix.finalizer import BatchFinalizer, FinalizationResult

APPLICATION_NAME = "cj-finalizer"
DRIVERS = ("psycopg", "asyncpg")
T = TypeVar("T")


class DatabaseSessionProvider:
    """The service's SessionProviderProtocol for a libpq URL or conninfo string: each
    `session()` is a new AsyncSession on its own connection (no pool, so the provider lives
    only as long as one event loop), through `driver` (psycopg or asyncpg). `server_settings`
    are set on every connection (e.g. a lock_timeout)."""

    def __init__(
        self,
        url: str,
        *,
        driver: str = "psycopg",
        application_name: str = APPLICATION_NAME,
        server_settings: Mapping[str, str] | None = None,
    ) -> None:
        if driver not in DRIVERS:
            raise ValueError(f"driver must be one of {', '.join(DRIVERS)}, got {driver!r}")
        params = pg_conninfo.conninfo_to_dict(url)
        options = _options(str(params.pop("options", "") or ""))
        options.update(server_settings or {})
        if driver == "psycopg":
            conninfo = pg_conninfo.make_conninfo(
                url,
                application_name=application_name,
                options=" ".join(f"-c {key}={value}" for key, value in options.items()),
            )

            async def connect() -> Any:
                return await psycopg.AsyncConnection.connect(conninfo)

        else:
            import asyncpg

            kwargs = _asyncpg_arguments(params, {**options, "application_name": application_name})

            async def connect() -> Any:
                return await asyncpg.connect(**kwargs)

        self.driver = driver
        self._engine = create_async_engine(
            f"postgresql+{driver}://", async_creator=connect, poolclass=NullPool
        )
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    async def dispose(self) -> None:
        await self._engine.dispose()


def _options(options: str) -> dict[str, str]:
    """`-c key=value` settings of a libpq `options` string."""
    settings: dict[str, str] = {}
    words = options.replace("-c ", "-c").split()
    for word in words:
        key, _, value = word.removeprefix("-c").partition("=")
        if key and value:
            settings[key] = value
    return settings


def _asyncpg_arguments(params: Mapping[str, Any], settings: dict[str, str]) -> dict[str, Any]:
    """asyncpg.connect() arguments for libpq connection parameters."""
    arguments: dict[str, Any] = {"server_settings": settings}
    for libpq, asyncpg_name in (("host", "host"), ("user", "user"), ("password", "password"),
                                ("dbname", "database")):  # fmt: skip
        if params.get(libpq):
            arguments[asyncpg_name] = str(params[libpq])
    if params.get("port"):
        arguments["port"] = int(params["port"])
    return arguments


def run_with_sessions(
    url: str,
    work: Callable[[DatabaseSessionProvider], Awaitable[T]],
    *,
    application_name: str = APPLICATION_NAME,
    driver: str = "psycopg",
    server_settings: Mapping[str, str] | None = None,
) -> T:
    """Run `work(provider)` on a new event loop and return its result; psycopg errors unwrapped."""

    async def main() -> T:
        provider = DatabaseSessionProvider(
            url, driver=driver, application_name=application_name, server_settings=server_settings
        )
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


def build_finalizer(provider: Any, **options: Any) -> BatchFinalizer:
    """`BatchFinalizer` with the project's own collaborators (python_fix.default_collaborators)."""
    return BatchFinalizer(
        session_provider=provider, **python_fix.default_collaborators(provider, **options)
    )


class SyncBatchFinalizer:
    """`BatchFinalizer.finalize_scoring_result` for synchronous callers. `step_hook` is set on
    the finalizer (python_fix.finalizer.STEPS)."""

    def __init__(
        self,
        url: str,
        *,
        driver: str = "psycopg",
        step_hook: Callable[[str], None] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self._url = url
        self._driver = driver
        self._step_hook = step_hook
        self._options = dict(options or {})

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
            finalizer = build_finalizer(provider, **self._options)
            finalizer.step_hook = self._step_hook
            return await finalizer.finalize_scoring_result(
                cj_batch_id, correlation, {}, completion_status=completion_status, source=source
            )

        return run_with_sessions(self._url, finalize, driver=self._driver)
