{#- The instruction text is not selected. -#}
with source as (
    select * from {{ source('cj', 'assessment_instructions') }}
),

renamed as (
    select
        id as assessment_instruction_id,
        assignment_id,
        course_id,
        grade_scale,
        created_at
    from source
)

select * from renamed
