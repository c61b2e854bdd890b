{#- Never selects the prompt, the judge's justification or its raw response (they quote
    student writing). -#}
with source as (
    select * from {{ source('cj', 'cj_comparison_pairs') }}
),

renamed as (
    select
        id as comparison_pair_id,
        cj_batch_id,
        essay_a_els_id,
        essay_b_els_id,
        winner,
        case
            when winner in ('essay_a', 'essay_b') then 'completed'
            when winner = 'error' then 'errored'
            when winner is null then 'pending'
            else 'unknown'
        end as pair_status,
        confidence,
        error_code,
        pair_generation_mode,
        submitted_at,
        completed_at,
        error_timestamp,
        {{ cj_source_timestamp('created_at') }} as created_at
    from source
)

select * from renamed
