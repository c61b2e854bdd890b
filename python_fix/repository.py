"""The repository patch: `PostgreSQLCJEssayRepository.create_or_update_cj_processed_essay`
keeps `is_anchor` in step with `processing_metadata["is_anchor"]` (the Batch 20 root cause 1).

Production's interface: the repository takes no constructor arguments, and the async method
`create_or_update_cj_processed_essay(session, cj_batch_id, els_essay_id, text_storage_id,
assessment_input_text, processing_metadata=None)` works on the caller's SQLAlchemy
`AsyncSession`. It never commits: the caller's transaction decides.

Rules:
- `is_anchor` follows `processing_metadata["is_anchor"]` on insert, and on update whenever the
  key is present. Key absent: an insert gets false, an update keeps the stored flag.
- Metadata is merged on update (stored keys kept, new keys win); `None` or `{}` never wipes it.
  The stored `is_anchor` key is normalised to a JSON boolean so column and metadata agree.
- Strict values only: JSON true/false, the strings "true"/"false" in any case, the integers
  1/0. Anything else raises ValueError naming the essay and the value.
- An essay that already has comparison pairs or grade projections cannot move to another batch.
- `text_storage_id` and `assessment_input_text` are required (NOT NULL in production): `None`
  raises ValueError naming the essay.
- Every check runs before the first write: an error leaves the row as it was. The caller owns
  the transaction (nothing here commits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

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


class PostgreSQLCJEssayRepository:
    """The CJ essay repository with the anchor-flag fix (production's class and signature)."""

    async def create_or_update_cj_processed_essay(
        self,
        session: AsyncSession,
        cj_batch_id: int,
        els_essay_id: str,
        text_storage_id: str,
        assessment_input_text: str,
        processing_metadata: Mapping[str, Any] | None = None,
    ) -> ProcessedEssay:
        """Insert or update one essay by `els_essay_id` inside the caller's transaction."""
        for name, value in (
            ("text_storage_id", text_storage_id),
            ("assessment_input_text", assessment_input_text),
        ):
            if not isinstance(value, str):
                raise ValueError(
                    f"essay {els_essay_id}: {name} must be a string, got {type(value).__name__}"
                )
        if processing_metadata is not None and not isinstance(processing_metadata, Mapping):
            raise ValueError(
                f"essay {els_essay_id}: processing_metadata must be a mapping, "
                f"got {type(processing_metadata).__name__}"
            )
        incoming = dict(processing_metadata or {})
        has_flag = ANCHOR_FLAG_KEY in incoming
        if has_flag:
            incoming[ANCHOR_FLAG_KEY] = parse_anchor_flag(els_essay_id, incoming[ANCHOR_FLAG_KEY])

        batch = (
            await session.execute(
                text("select 1 from cj_batch_uploads where id = :id"), {"id": cj_batch_id}
            )
        ).first()
        if batch is None:
            raise ValueError(f"essay {els_essay_id}: CJ batch {cj_batch_id} does not exist")

        values = {
            "id": els_essay_id,
            "batch_id": cj_batch_id,
            "storage": text_storage_id,
            "text": assessment_input_text,
        }
        existing = await _lock_existing(session, els_essay_id)
        if existing is None:
            flag = bool(incoming.get(ANCHOR_FLAG_KEY, False))
            inserted = (
                await session.execute(
                    text(
                        "insert into cj_processed_essays (els_essay_id, cj_batch_id, "
                        "text_storage_id, assessment_input_text, comparison_count, is_anchor, "
                        "processing_metadata) values (:id, :batch_id, :storage, :text, 0, "
                        ":flag, :metadata) on conflict (els_essay_id) do nothing "
                        "returning els_essay_id"
                    ),
                    {**values, "flag": flag, "metadata": Json(incoming)},
                )
            ).first()
            if inserted is not None:
                return ProcessedEssay(els_essay_id, cj_batch_id, flag, incoming, created=True)
            # Another transaction inserted it after our look-up: update that row instead.
            existing = await _lock_existing(session, els_essay_id)
            assert existing is not None

        stored_batch_id, stored_flag, stored_metadata = existing
        if stored_batch_id != cj_batch_id and await _has_results(session, els_essay_id):
            raise EssayMoveRefused(
                f"essay {els_essay_id} has comparison pairs or grade projections in CJ batch "
                f"{stored_batch_id}; it cannot move to batch {cj_batch_id}"
            )
        merged = dict(stored_metadata) if isinstance(stored_metadata, Mapping) else {}
        merged.update(incoming)
        flag = incoming[ANCHOR_FLAG_KEY] if has_flag else bool(stored_flag)
        await session.execute(
            text(
                "update cj_processed_essays set cj_batch_id = :batch_id, "
                "text_storage_id = :storage, assessment_input_text = :text, is_anchor = :flag, "
                "processing_metadata = :metadata, updated_at = now() where els_essay_id = :id"
            ),
            {**values, "flag": flag, "metadata": Json(merged)},
        )
        return ProcessedEssay(els_essay_id, cj_batch_id, flag, merged, created=False)


async def _lock_existing(session: AsyncSession, els_essay_id: str) -> tuple | None:
    row = (
        await session.execute(
            text(
                "select cj_batch_id, is_anchor, processing_metadata from cj_processed_essays "
                "where els_essay_id = :id for update"
            ),
            {"id": els_essay_id},
        )
    ).first()
    return tuple(row) if row is not None else None


async def _has_results(session: AsyncSession, els_essay_id: str) -> bool:
    row = (
        await session.execute(
            text(
                "select exists (select 1 from cj_comparison_pairs "
                "where essay_a_els_id = :id or essay_b_els_id = :id) "
                "or exists (select 1 from grade_projections where els_essay_id = :id)"
            ),
            {"id": els_essay_id},
        )
    ).first()
    return bool(row[0])
