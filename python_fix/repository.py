"""The repository patch: `PostgreSQLCJEssayRepository`, the service's whole
CJEssayRepositoryProtocol, with `create_or_update_cj_processed_essay` keeping `is_anchor` in
step with `processing_metadata["is_anchor"]` (the Batch 20 root cause 1).

Production's interface: no constructor arguments; every method is async, takes the caller's
SQLAlchemy `AsyncSession` first, flushes at most and never commits (the caller's transaction
decides). Rows come back as `ProcessedEssay` (python_fix.models), with every column of
`cj_processed_essays` as an attribute.

- `create_or_update_cj_processed_essay(session, cj_batch_id, els_essay_id, text_storage_id,
  assessment_input_text, processing_metadata=None) -> ProcessedEssay`
- `get_essays_for_cj_batch(session, cj_batch_id) -> list[ProcessedEssay]` (by essay id)
- `update_essay_scores_in_batch(session, cj_batch_id, scores: dict[str, float])`
- `get_final_cj_rankings(session, cj_batch_id) -> list[dict]`: every essay of the batch,
  anchors included, by BT score descending (unscored last, then essay id), `rank` 1..n, with
  production's keys (rank, els_essay_id, bradley_terry_score, bradley_terry_se,
  comparison_count, is_anchor, text_storage_id, processing_metadata).

Rules of the upsert:
- `is_anchor` follows `processing_metadata["is_anchor"]` on insert, and on update whenever the
  key is present. Key absent: an insert gets false, an update keeps the stored flag.
- An insert without metadata (None or `{}`) stores NULL, as production does. On update,
  metadata is merged (stored keys kept, new keys win); `None` or `{}` never wipes it. The
  stored `is_anchor` key is normalised to a JSON boolean so column and metadata agree.
- Strict values only: JSON true/false, the strings "true"/"false" in any case, the integers
  1/0. Anything else raises ValueError naming the essay and the value.
- An essay that already has comparison pairs or grade projections cannot move to another batch.
- `text_storage_id` and `assessment_input_text` are required (NOT NULL in production): `None`
  raises ValueError naming the essay.
- Every check runs before the first write: an error leaves the row as it was.
- Row locks are FOR NO KEY UPDATE: they never block another session's foreign-key checks
  (a grade projection or comparison pair being inserted for the essay).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from python_fix.models import CJBatchUpload, ComparisonPair, GradeProjection, ProcessedEssay

ANCHOR_FLAG_KEY = "is_anchor"
_TRUE_STRINGS = {"true"}
_FALSE_STRINGS = {"false"}


class EssayMoveRefused(ValueError):
    """The essay already has comparisons or projections in its batch and cannot move."""


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
    """The CJ essay repository with the anchor-flag fix (production's class and protocol)."""

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

        if not await _batch_exists(session, cj_batch_id):
            raise ValueError(f"essay {els_essay_id}: CJ batch {cj_batch_id} does not exist")

        essay = await _locked(session, els_essay_id)
        if essay is None:
            inserted = await session.execute(
                insert(ProcessedEssay)
                .values(
                    els_essay_id=els_essay_id,
                    cj_batch_id=cj_batch_id,
                    text_storage_id=text_storage_id,
                    assessment_input_text=assessment_input_text,
                    comparison_count=0,
                    is_anchor=bool(incoming.get(ANCHOR_FLAG_KEY, False)),
                    processing_metadata=incoming or None,
                )
                .on_conflict_do_nothing(index_elements=["els_essay_id"])
                .returning(ProcessedEssay.els_essay_id)
            )
            created = inserted.first() is not None
            # Inserted now, or by another transaction after our look-up: update that row.
            essay = await _locked(session, els_essay_id)
            if created:
                return essay

        if essay.cj_batch_id != cj_batch_id and await _has_results(session, els_essay_id):
            raise EssayMoveRefused(
                f"essay {els_essay_id} has comparison pairs or grade projections in CJ batch "
                f"{essay.cj_batch_id}; it cannot move to batch {cj_batch_id}"
            )
        essay.cj_batch_id = cj_batch_id
        essay.text_storage_id = text_storage_id
        essay.assessment_input_text = assessment_input_text
        if incoming:
            stored = essay.processing_metadata
            essay.processing_metadata = {**(stored if isinstance(stored, Mapping) else {}),
                                         **incoming}  # fmt: skip
        if has_flag:
            essay.is_anchor = incoming[ANCHOR_FLAG_KEY]
        await session.flush()
        return essay

    async def get_essays_for_cj_batch(
        self, session: AsyncSession, cj_batch_id: int
    ) -> list[ProcessedEssay]:
        """Every essay row of the batch, anchors included, by essay id."""
        rows = await session.scalars(
            select(ProcessedEssay)
            .where(ProcessedEssay.cj_batch_id == cj_batch_id)
            .order_by(ProcessedEssay.els_essay_id)
            .execution_options(populate_existing=True)
        )
        return list(rows)

    async def update_essay_scores_in_batch(
        self, session: AsyncSession, cj_batch_id: int, scores: Mapping[str, float]
    ) -> None:
        """Set `current_bt_score` of the batch's essays named in `scores`. An id that is not an
        essay of the batch raises ValueError before anything is written."""
        rows = await self.get_essays_for_cj_batch(session, cj_batch_id)
        essays = {essay.els_essay_id: essay for essay in rows}
        unknown = sorted(set(scores) - set(essays))
        if unknown:
            raise ValueError(
                f"CJ batch {cj_batch_id} has no essays {unknown[:5]}"
                + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            )
        for essay_id, score in scores.items():
            essays[essay_id].current_bt_score = float(score)
        await session.flush()

    async def get_final_cj_rankings(
        self, session: AsyncSession, cj_batch_id: int
    ) -> list[dict[str, Any]]:
        """The batch's ranking (see the module docstring)."""
        essays = await self.get_essays_for_cj_batch(session, cj_batch_id)
        essays.sort(key=lambda e: (e.current_bt_score is None, -(e.current_bt_score or 0.0),
                                   e.els_essay_id))  # fmt: skip
        return [
            {
                "rank": rank,
                "els_essay_id": essay.els_essay_id,
                "bradley_terry_score": essay.current_bt_score,
                "bradley_terry_se": essay.current_bt_se,
                "comparison_count": essay.comparison_count,
                "is_anchor": essay.is_anchor,
                "text_storage_id": essay.text_storage_id,
                "processing_metadata": essay.processing_metadata,
            }
            for rank, essay in enumerate(essays, start=1)
        ]


async def _batch_exists(session: AsyncSession, cj_batch_id: int) -> bool:
    found = await session.scalar(select(CJBatchUpload.id).where(CJBatchUpload.id == cj_batch_id))
    return found is not None


async def _locked(session: AsyncSession, els_essay_id: str) -> ProcessedEssay | None:
    return await session.scalar(
        select(ProcessedEssay)
        .where(ProcessedEssay.els_essay_id == els_essay_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


async def _has_results(session: AsyncSession, els_essay_id: str) -> bool:
    paired = exists().where(
        or_(
            ComparisonPair.essay_a_els_id == els_essay_id,
            ComparisonPair.essay_b_els_id == els_essay_id,
        )
    )
    projected = exists().where(GradeProjection.els_essay_id == els_essay_id)
    return bool(await session.scalar(select(or_(paired, projected))))
