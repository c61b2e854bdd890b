"""The repository patch: `create_or_update_cj_processed_essay` keeps `is_anchor` in step with
`processing_metadata["is_anchor"]` (the Batch 20 root cause 1).

Rules (issue 3):
- `is_anchor` follows `processing_metadata["is_anchor"]` on insert, and on update whenever the
  key is present. Key absent: an insert gets false, an update keeps the stored flag.
- Metadata is merged on update (stored keys kept, new keys win); `None` or `{}` never wipes it.
  The stored `is_anchor` key is normalised to a JSON boolean so column and metadata agree.
- Strict values only: JSON true/false, the strings "true"/"false" in any case, the integers
  1/0. Anything else raises ValueError naming the essay and the value.
- An essay that already has comparison pairs or grade projections cannot move to another batch.
- Every check runs before the first write: an error leaves the row as it was. The caller owns
  the transaction (nothing here commits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Json

ANCHOR_FLAG_KEY = "is_anchor"
_TRUE_STRINGS = {"true"}
_FALSE_STRINGS = {"false"}


class EssayMoveRefused(ValueError):
    """The essay already has comparisons or projections in its batch and cannot move."""


@dataclass(frozen=True)
class ProcessedEssay:
    """The row as stored after the upsert (no essay text)."""

    els_essay_id: str
    cj_batch_id: int
    is_anchor: bool
    processing_metadata: dict[str, Any]
    created: bool


def parse_anchor_flag(els_essay_id: str, value: object) -> bool:
    """The strict reading of a metadata `is_anchor` value (see the module docstring)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE_STRINGS:
            return True
        if lowered in _FALSE_STRINGS:
            return False
    raise ValueError(
        f"essay {els_essay_id}: processing_metadata['is_anchor'] must be true/false, "
        f"'true'/'false' or 1/0, got {value!r}"
    )


def create_or_update_cj_processed_essay(
    conn: psycopg.Connection,
    *,
    cj_batch_id: int,
    els_essay_id: str,
    text_storage_id: str | None,
    assessment_input_text: str | None,
    processing_metadata: Mapping[str, Any] | None = None,
) -> ProcessedEssay:
    """Insert or update one essay by `els_essay_id` inside the caller's transaction."""
    if processing_metadata is not None and not isinstance(processing_metadata, Mapping):
        raise ValueError(
            f"essay {els_essay_id}: processing_metadata must be a mapping, "
            f"got {type(processing_metadata).__name__}"
        )
    incoming = dict(processing_metadata or {})
    has_flag = ANCHOR_FLAG_KEY in incoming
    if has_flag:
        incoming[ANCHOR_FLAG_KEY] = parse_anchor_flag(els_essay_id, incoming[ANCHOR_FLAG_KEY])

    batch = conn.execute("select 1 from cj_batch_uploads where id = %s", (cj_batch_id,)).fetchone()
    if batch is None:
        raise ValueError(f"essay {els_essay_id}: CJ batch {cj_batch_id} does not exist")

    existing = _lock_existing(conn, els_essay_id)
    if existing is None:
        inserted = conn.execute(
            "insert into cj_processed_essays (els_essay_id, cj_batch_id, text_storage_id, "
            "assessment_input_text, comparison_count, is_anchor, processing_metadata) "
            "values (%s, %s, %s, %s, 0, %s, %s) "
            "on conflict (els_essay_id) do nothing returning els_essay_id",
            (
                els_essay_id,
                cj_batch_id,
                text_storage_id,
                assessment_input_text,
                bool(incoming.get(ANCHOR_FLAG_KEY, False)),
                Json(incoming),
            ),
        ).fetchone()
        if inserted is not None:
            return ProcessedEssay(
                els_essay_id,
                cj_batch_id,
                bool(incoming.get(ANCHOR_FLAG_KEY, False)),
                incoming,
                created=True,
            )
        # Another transaction inserted it after our look-up: update that row instead.
        existing = _lock_existing(conn, els_essay_id)
        assert existing is not None

    stored_batch_id, stored_flag, stored_metadata = existing
    if stored_batch_id != cj_batch_id and _has_results(conn, els_essay_id):
        raise EssayMoveRefused(
            f"essay {els_essay_id} has comparison pairs or grade projections in CJ batch "
            f"{stored_batch_id}; it cannot move to batch {cj_batch_id}"
        )
    merged = dict(stored_metadata) if isinstance(stored_metadata, Mapping) else {}
    merged.update(incoming)
    flag = incoming[ANCHOR_FLAG_KEY] if has_flag else bool(stored_flag)
    conn.execute(
        "update cj_processed_essays set cj_batch_id = %s, "
        "text_storage_id = coalesce(%s, text_storage_id), "
        "assessment_input_text = coalesce(%s, assessment_input_text), "
        "is_anchor = %s, processing_metadata = %s, updated_at = now() "
        "where els_essay_id = %s",
        (
            cj_batch_id,
            text_storage_id,
            assessment_input_text,
            flag,
            Json(merged),
            els_essay_id,
        ),
    )
    return ProcessedEssay(els_essay_id, cj_batch_id, flag, merged, created=False)


def _lock_existing(conn: psycopg.Connection, els_essay_id: str) -> tuple | None:
    return conn.execute(
        "select cj_batch_id, is_anchor, processing_metadata from cj_processed_essays "
        "where els_essay_id = %s for update",
        (els_essay_id,),
    ).fetchone()


def _has_results(conn: psycopg.Connection, els_essay_id: str) -> bool:
    row = conn.execute(
        "select exists (select 1 from cj_comparison_pairs "
        "where essay_a_els_id = %(id)s or essay_b_els_id = %(id)s) "
        "or exists (select 1 from grade_projections where els_essay_id = %(id)s)",
        {"id": els_essay_id},
    ).fetchone()
    return bool(row[0])
