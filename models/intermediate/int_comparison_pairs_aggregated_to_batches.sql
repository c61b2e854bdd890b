{#- Comparison pairs per batch, by their outcome: one pass over the pairs, no join. (Pairs
    comparing an essay of another batch are invariant 6's subject, a dbt test: the join to
    the essays it needs would double the cost of refreshing cj_batch_health.) -#}
with pairs as (
    select * from {{ ref('stg_cj__comparison_pairs') }}
),

aggregated as (
    select
        cj_batch_id,
        count(*) as pair_count,
        count(*) filter (where pair_status = 'completed') as pairs_completed,
        count(*) filter (where pair_status = 'errored') as pairs_errored,
        count(*) filter (where pair_status = 'pending') as pairs_pending
    from pairs
    group by cj_batch_id
)

select * from aggregated
