"""The CJ service patches for the Batch 20 incident, with production's interfaces.

- `python_fix.repository.PostgreSQLCJEssayRepository`: the `is_anchor` upsert fix (async, on the
  caller's SQLAlchemy AsyncSession).
- `python_fix.finalizer.BatchFinalizer`: the atomic, idempotent two-phase finalizer (async, on
  the service's session provider).
- `python_fix.events`: the three outbox rows a finalized batch publishes.
- `python_fix.scoring`: Bradley–Terry scores and grade projection the finalizer uses.
- `python_fix.grade_scales`: production's three grade scales, cheap to import.

This package talks to the CJ service tables through SQLAlchemy (driver psycopg 3) only; it does
not import cj_health.
"""
