{#- The finalization events of the outbox, each matched to its CJ batch: the thin completion
    event by `aggregate_id` = the upload's `bos_batch_id`, the rich result event by
    `aggregate_id` = the CJ batch id. A BOS batch assessed twice has its completion events
    matched to both CJ batches. Other outbox events are not finalization events and are left
    out. -#}
with events as (
    select * from {{ ref('stg_cj__event_outbox') }}
    where event_kind is not null
),

uploads as (
    select
        cj_batch_id,
        bos_batch_id,
        event_correlation_id
    from {{ ref('stg_cj__batch_uploads') }}
),

completion_events as (
    select
        uploads.cj_batch_id,
        uploads.event_correlation_id as expected_correlation_id,
        events.*
    from events
    inner join uploads on events.aggregate_id = uploads.bos_batch_id
    where events.event_kind = 'completion'
),

result_events as (
    select
        uploads.cj_batch_id,
        uploads.event_correlation_id as expected_correlation_id,
        events.*
    from events
    inner join uploads on events.aggregate_id = uploads.cj_batch_id::text
    where events.event_kind = 'result'
),

unioned as (
    select * from completion_events
    union all
    select * from result_events
),

checked as (
    select
        cj_batch_id,
        outbox_event_id,
        event_kind,
        aggregate_id,
        aggregate_type,
        topic,
        correlation_id,
        expected_correlation_id,
        coalesce(correlation_id <> expected_correlation_id, true) as is_correlation_mismatch,
        created_at,
        published_at
    from unioned
)

select * from checked
