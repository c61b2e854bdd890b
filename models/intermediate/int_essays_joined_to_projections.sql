{#- One row per essay and per grade projection, matched on (essay, batch) as a full outer join:
    an essay with its projection, an essay without one, or a projection filed under a batch
    its essay does not belong to (the foreign key guarantees the essay exists elsewhere).
    One pass over each table; the per-row rules here are the single definition that the
    batch aggregates and the invariants share. -#}
{# `not materialized` (both are read twice below): a condition on one batch must still reach
    the essays' and the projections' batch indexes. #}
with essays as not materialized (
    select * from {{ ref('stg_cj__processed_essays') }}
),

projections as (
    select * from {{ ref('stg_cj__grade_projections') }}
),

grade_scales as (
    select * from {{ ref('cj_grade_scales') }}
),

{# The grade-scale check is made on the projections alone, before the full join: the small
    scale hash is probed once per projection, not once per joined essay row. #}
scaled_projections as not materialized (
    select
        projections.els_essay_id,
        projections.cj_batch_id,
        projections.grade_scale,
        projections.primary_grade,
        projections.confidence_score,
        projections.confidence_label,
        grade_scales.grade is not null as is_grade_in_scale
    from projections
    left join grade_scales
        on
            projections.grade_scale = grade_scales.grade_scale
            and projections.primary_grade = grade_scales.grade
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
        projections.is_grade_in_scale
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
        projections.is_grade_in_scale
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
        and not has_projection as is_student_without_projection,
        has_projection
        and (
            not is_grade_in_scale
            or confidence_score is null
            or confidence_score not between 0 and 1
            or confidence_label is null
            or confidence_label not in ('HIGH', 'MID', 'LOW')
        ) as has_invalid_projection_values
    from joined
)

select * from checked
