"""The CJ service patches for the Batch 20 incident, with production's interfaces.

- `python_fix.repository.PostgreSQLCJEssayRepository`: the essay repository (the whole
  CJEssayRepositoryProtocol) with the `is_anchor` upsert fix, on the caller's AsyncSession.
- `python_fix.finalizer.BatchFinalizer`: production's finalizer (constructor and three
  methods), atomic, idempotent and safe under concurrent callers.
- `python_fix.events`: the outbox rows finalization writes, and the relay wake-up.
- `python_fix.scoring`: Bradley–Terry scores and production's grade projection maths (pure).
- `python_fix.context`: a batch's grade scale and anchor grades, as production resolves them.
- `python_fix.projector`: the project's grade projector (production's protocol).
- `python_fix.models`: the service tables as SQLAlchemy mapped classes.
- `python_fix.collaborators`: the project's own collaborators for running the finalizer
  outside the service; `default_collaborators(session_provider)` builds them.
- `python_fix.grade_scales`: production's three grade scales, cheap to import.

Everything runs on SQLAlchemy's AsyncSession with either asyncpg (the service's driver) or
psycopg; nothing here imports cj_health.
"""

from __future__ import annotations

from typing import Any


def default_collaborators(session_provider: Any, **options: Any) -> dict[str, Any]:
    """The seven keyword arguments besides `session_provider` that construct `BatchFinalizer`
    with the project's own collaborators: `BatchFinalizer(session_provider=p,
    **python_fix.default_collaborators(p))`. Options: `redis_client`, `settings`
    (python_fix.collaborators.default_collaborators). Imported here on first use, so that
    `python_fix.grade_scales` stays cheap to import."""
    from python_fix.collaborators import default_collaborators as build

    return build(session_provider, **options)
