{#- The grade projections filed under each batch, whether or not their essay is in it: one
    pass over the projections, no join with the essays. -#}
with projections as (
    select * from {{ ref('int_grade_projections_checked_against_scales') }}
),

aggregated as (
    select
        cj_batch_id,
        count(*) as projection_count,
        count(*) filter (where has_invalid_projection_values) as invalid_projection_count
    from projections
    group by cj_batch_id
)

select * from aggregated
