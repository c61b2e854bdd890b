"""The CJ service patches for the Batch 20 incident (issue 3).

- `python_fix.repository.create_or_update_cj_processed_essay`: the `is_anchor` upsert fix.
- `python_fix.finalizer.BatchFinalizer`: the atomic, idempotent two-phase finalizer.
- `python_fix.scoring`: Bradley–Terry scores and grade projection the finalizer uses.
- `python_fix.grade_scales`: the grade scales projection knows (ENG5), cheap to import.

This package talks to the CJ service tables with psycopg 3 only; it does not import cj_health.
"""
