{#- Registered anchor references per assignment. -#}
with anchor_references as (
    select * from {{ ref('stg_cj__anchor_essay_references') }}
),

aggregated as (
    select
        assignment_id,
        count(*) as registered_anchor_count
    from anchor_references
    where assignment_id is not null
    group by assignment_id
)

select * from aggregated
