{#- One row per comparison pair with the batch each of its two essays belongs to. -#}
with pairs as (
    select * from {{ ref('stg_cj__comparison_pairs') }}
),

essays as (
    select
        els_essay_id,
        cj_batch_id
    from {{ ref('stg_cj__processed_essays') }}
),

joined as (
    select
        pairs.comparison_pair_id,
        pairs.cj_batch_id,
        pairs.pair_status,
        pairs.essay_a_els_id,
        essay_a.cj_batch_id as essay_a_batch_id,
        pairs.essay_b_els_id,
        essay_b.cj_batch_id as essay_b_batch_id,
        pairs.submitted_at,
        pairs.completed_at,
        pairs.error_timestamp
    from pairs
    left join essays as essay_a on pairs.essay_a_els_id = essay_a.els_essay_id
    left join essays as essay_b on pairs.essay_b_els_id = essay_b.els_essay_id
),

checked as (
    select
        *,
        coalesce(essay_a_batch_id <> cj_batch_id, true)
        or coalesce(essay_b_batch_id <> cj_batch_id, true) as is_cross_batch_pair
    from joined
)

select * from checked
