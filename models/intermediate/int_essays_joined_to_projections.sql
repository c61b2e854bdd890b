{#- One row per essay and per grade projection, matched on (essay, batch) as a full outer join:
    an essay with its projection, an essay without one, or a projection filed under a batch
    its essay does not belong to (the foreign key guarantees the essay exists elsewhere).
    The per-row rules here are the single definition that the batch aggregates and the
    invariants share (the rule on a projection's own values comes from
    int_grade_projections_checked_against_scales). The batch aggregates read only the essay
    rows: `where has_essay` leaves out the second half below and its join. -#}
{# `not materialized` (both are read twice below): a condition on one batch must still reach
    the essays' and the projections' batch indexes. #}
with essays as not materialized (
    select * from {{ ref('stg_cj__processed_essays') }}
),

{# The projections with the rule on their own values (grade in scale, confidence). #}
scaled_projections as not materialized (
    select * from {{ ref('int_grade_projections_checked_against_scales') }}
),

{# The full outer join on (essay, batch), written as its two halves so that each half is
    keyed by its own table's cj_batch_id: a condition on one batch (the refresh recomputing
    a few batches) reaches the essays' and the projections' batch indexes. #}
essays_with_projections as (
    select
        essays.cj_batch_id,
        essays.els_essay_id,
        true as has_essay,
        projections.els_essay_id is not null as has_projection,
        essays.is_anchor,
        essays.metadata_is_anchor,
        essays.metadata_is_anchor_invalid,
        essays.is_anchor_flag_mismatch,
        essays.is_anchor_by_either,
        essays.bt_score,
        essays.bt_se,
        projections.grade_scale,
        projections.primary_grade,
        projections.confidence_score,
        projections.confidence_label,
        projections.is_grade_in_scale,
        coalesce(
            projections.has_invalid_projection_values, false
        ) as has_invalid_projection_values
    from essays
    left join scaled_projections as projections
        on
            essays.els_essay_id = projections.els_essay_id
            and essays.cj_batch_id = projections.cj_batch_id
),

projections_without_essay as (
    select
        projections.cj_batch_id,
        projections.els_essay_id,
        false as has_essay,
        true as has_projection,
        null::boolean as is_anchor,
        null::boolean as metadata_is_anchor,
        null::boolean as metadata_is_anchor_invalid,
        null::boolean as is_anchor_flag_mismatch,
        null::boolean as is_anchor_by_either,
        null::double precision as bt_score,
        null::double precision as bt_se,
        projections.grade_scale,
        projections.primary_grade,
        projections.confidence_score,
        projections.confidence_label,
        projections.is_grade_in_scale,
        projections.has_invalid_projection_values
    from scaled_projections as projections
    where not exists (
        select from essays as batch_essays
        where
            batch_essays.els_essay_id = projections.els_essay_id
            and batch_essays.cj_batch_id = projections.cj_batch_id
    )
),

joined as (
    select * from essays_with_projections
    union all
    select * from projections_without_essay
),

checked as (
    select
        *,
        has_essay and not is_anchor_by_either as is_student,
        has_projection and not has_essay as is_misattributed_projection,
        has_projection and has_essay and is_anchor_by_either as is_anchor_projection,
        has_essay
        and not is_anchor_by_either
        and not has_projection as is_student_without_projection
    from joined
)

select * from checked
