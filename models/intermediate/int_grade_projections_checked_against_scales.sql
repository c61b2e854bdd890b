{#- One row per grade projection with the rule on its own values: its grade is a grade of its
    scale (seed cj_grade_scales), its confidence score lies in [0, 1], its label is HIGH, MID
    or LOW. Checked once per projection, before any join with the essays: the small scale
    hash is probed once per projection. -#}
with projections as (
    select * from {{ ref('stg_cj__grade_projections') }}
),

grade_scales as (
    select * from {{ ref('cj_grade_scales') }}
),

scaled as (
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

checked as (
    select
        *,
        not is_grade_in_scale
        or confidence_score is null
        or confidence_score not between 0 and 1
        or confidence_label is null
        or confidence_label not in ('HIGH', 'MID', 'LOW') as has_invalid_projection_values
    from scaled
)

select * from checked
