{#- Never selects `assessment_input_text` (student writing).

    The metadata's `is_anchor` is read the way the repository patch reads it: JSON true/false,
    the strings 'true'/'false' in any case, or the numbers 1/0; absent or JSON null gives
    null. Any other value sets `metadata_is_anchor_invalid` instead of failing a cast. It is
    read from the value's JSON text (`-> 'is_anchor'` as text: `true`, `"TRUE"`, `1`, ...),
    which tells a string from a number without a second parse.

    Parsing `json` (not jsonb) is the costly part of reading this table, so it is done once
    per row and only where the text holds the key `"is_anchor"` (a key spelled with JSON
    escapes would be missed). The parse sits in a one-row lateral subquery that `offset 0`
    keeps PostgreSQL from merging into the next steps (merged, it would be repeated for every
    column derived from it), so it runs once per row; the table itself stays in the outer
    query, so a condition on `cj_batch_id` still reaches its index (the refresh recomputes a
    few batches' facts through ix_cj_processed_essays_cj_batch_id, not a scan of every
    essay).
-#}
with source as (
    select * from {{ source('cj', 'cj_processed_essays') }}
),

flag_read as (
    select
        source.els_essay_id,
        source.cj_batch_id,
        source.text_storage_id,
        source.current_bt_score,
        source.current_bt_se,
        source.comparison_count,
        source.is_anchor,
        source.created_at,
        source.updated_at,
        flag.metadata_is_anchor_json
    from source
    cross join lateral (  -- noqa: ST05
        select
            case
                when strpos(source.processing_metadata::text, '"is_anchor"') > 0
                    then (source.processing_metadata -> 'is_anchor')::text
            end as metadata_is_anchor_json
        -- a fence for the planner (see above), not a limit
        offset 0  -- noqa: AM09, PRS
    ) as flag
),

{# Read once per row too (the same kind of fence): every rule below reads the boolean, and
    lower() is not cheap either. #}
parsed as (
    select
        flag_read.*,
        readable.metadata_is_anchor
    from flag_read
    cross join lateral (  -- noqa: ST05
        select
            case lower(flag_read.metadata_is_anchor_json)
                when 'true' then true
                when '"true"' then true
                when '1' then true
                when 'false' then false
                when '"false"' then false
                when '0' then false
                when '-0' then false
            end as metadata_is_anchor
        -- a fence for the planner (see above), not a limit
        offset 0  -- noqa: AM09, PRS
    ) as readable
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
        metadata_is_anchor is null
        and coalesce(metadata_is_anchor_json <> 'null', false) as metadata_is_anchor_invalid,
        left(metadata_is_anchor_json, 40) as metadata_is_anchor_raw,
        coalesce(metadata_is_anchor <> is_anchor, false) as is_anchor_flag_mismatch,
        coalesce(is_anchor or metadata_is_anchor, is_anchor) as is_anchor_by_either,
        {{ cj_source_timestamp('created_at') }} as created_at,
        {{ cj_source_timestamp('updated_at') }} as updated_at
    from parsed
)

select * from renamed
