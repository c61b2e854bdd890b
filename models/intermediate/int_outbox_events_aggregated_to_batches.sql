{#- The CJ service's outbox events per batch (int_outbox_events_mapped_to_batches). An event
    is abandoned once the relay has given up on it: still unpublished after
    var outbox_max_retries tries (production's relay stops at 5). -#}
with events as (
    select * from {{ ref('int_outbox_events_mapped_to_batches') }}
),

aggregated as (
    select
        cj_batch_id,
        count(*) as outbox_event_count,
        count(*) filter (where event_kind = 'completion') as completion_event_count,
        count(*) filter (where event_kind = 'result') as result_event_count,
        count(*) filter (where is_correlation_mismatch) as correlation_mismatch_event_count,
        count(*) filter (where published_at is null) as unpublished_event_count,
        count(*) filter (
            where published_at is null
            and retry_count >= {{ cj_threshold('outbox_max_retries') }}
        ) as abandoned_event_count,
        min(created_at) filter (where published_at is null) as oldest_unpublished_event_at,
        max(created_at) as last_event_at
    from events
    group by cj_batch_id
)

select * from aggregated
