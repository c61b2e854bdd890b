with source as (
    select * from {{ source('cj', 'anchor_essay_references') }}
),

renamed as (
    select
        id as anchor_reference_id,
        assignment_id,
        anchor_label,
        grade,
        grade_scale,
        text_storage_id,
        {{ cj_source_timestamp('created_at') }} as created_at
    from source
)

select * from renamed
