{#- Comparison pairs per batch, by their outcome. -#}
with pairs as (
    select * from {{ ref('int_comparison_pairs_joined_to_essays') }}
),

aggregated as (
    select
        cj_batch_id,
        count(*) as pair_count,
        count(*) filter (where pair_status = 'completed') as pairs_completed,
        count(*) filter (where pair_status = 'errored') as pairs_errored,
        count(*) filter (where pair_status = 'pending') as pairs_pending,
        count(*) filter (where pair_status = 'unknown') as pairs_with_unknown_winner,
        count(*) filter (where is_cross_batch_pair) as cross_batch_pair_count,
        greatest(
            max(submitted_at), max(completed_at), max(error_timestamp)
        ) as last_pair_activity_at
    from pairs
    group by cj_batch_id
)

select * from aggregated
