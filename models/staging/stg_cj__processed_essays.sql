{#- Never selects `assessment_input_text` (student writing). The metadata's `is_anchor` is read
    the way the repository patch reads it: JSON true/false, the strings 'true'/'false' in any
    case, or the numbers 1/0. Any other value sets `metadata_is_anchor_invalid` instead of
    failing a cast. -#}
with source as (
    select * from {{ source('cj', 'cj_processed_essays') }}
),

flag_read as (
    select
        *,
        json_typeof(processing_metadata -> 'is_anchor') as metadata_is_anchor_type,
        processing_metadata ->> 'is_anchor' as metadata_is_anchor_text
    from source
),

parsed as (
    select
        *,
        case
            when metadata_is_anchor_type = 'boolean'
                then metadata_is_anchor_text = 'true'
            when metadata_is_anchor_type = 'string' and lower(metadata_is_anchor_text) = 'true'
                then true
            when metadata_is_anchor_type = 'string' and lower(metadata_is_anchor_text) = 'false'
                then false
            when metadata_is_anchor_type = 'number' and metadata_is_anchor_text = '1'
                then true
            when metadata_is_anchor_type = 'number' and metadata_is_anchor_text in ('0', '-0')
                then false
        end as metadata_is_anchor
    from flag_read
),

renamed as (
    select
        els_essay_id,
        cj_batch_id,
        text_storage_id,
        current_bt_score as bt_score,
        current_bt_se as bt_se,
        comparison_count,
        is_anchor,
        metadata_is_anchor,
        coalesce(metadata_is_anchor_type not in ('null'), false)
        and metadata_is_anchor is null as metadata_is_anchor_invalid,
        left(metadata_is_anchor_text, 40) as metadata_is_anchor_raw,
        coalesce(metadata_is_anchor <> is_anchor, false) as is_anchor_flag_mismatch,
        coalesce(is_anchor or metadata_is_anchor, is_anchor) as is_anchor_by_either,
        processing_metadata ->> 'anchor_ref_id' as metadata_anchor_ref_id,
        processing_metadata ->> 'known_grade' as metadata_known_grade,
        {{ cj_source_timestamp('created_at') }} as created_at,
        {{ cj_source_timestamp('updated_at') }} as updated_at
    from parsed
)

select * from renamed
