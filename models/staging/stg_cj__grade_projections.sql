with source as (
    select * from {{ source('cj', 'grade_projections') }}
),

renamed as (
    select
        els_essay_id,
        cj_batch_id,
        primary_grade,
        grade_scale,
        confidence_score,
        confidence_label,
        population_prior,
        normalized_score,
        assessment_method,
        created_at
    from source
)

select * from renamed
