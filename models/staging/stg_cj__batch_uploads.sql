with source as (
    select * from {{ source('cj', 'cj_batch_uploads') }}
),

renamed as (
    select
        id as cj_batch_id,
        bos_batch_id,
        event_correlation_id,
        language,
        course_code,
        expected_essay_count,
        assignment_id,
        status::text as upload_status,
        status::text like 'COMPLETE\_%' as is_upload_complete,
        status::text like 'ERROR\_%' as is_upload_error,
        {{ cj_source_timestamp('created_at') }} as created_at,
        {{ cj_source_timestamp('updated_at') }} as updated_at,
        {{ cj_source_timestamp('completed_at') }} as completed_at
    from source
)

select * from renamed
