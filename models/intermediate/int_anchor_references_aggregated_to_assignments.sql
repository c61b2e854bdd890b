{#- Registered anchor references per assignment and grade scale: the anchors production adds
    to a batch of that assignment whose scale is that scale. -#}
with anchor_references as (
    select * from {{ ref('stg_cj__anchor_essay_references') }}
),

aggregated as (
    select
        assignment_id,
        grade_scale,
        count(*) as registered_anchor_count
    from anchor_references
    where assignment_id is not null
    group by assignment_id, grade_scale
)

select * from aggregated
