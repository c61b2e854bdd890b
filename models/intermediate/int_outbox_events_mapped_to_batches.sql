{#- The CJ service's own outbox events, each matched to its CJ batch: the thin completion,
    the resource-consumption and the failure event by `aggregate_id` = the upload's
    `bos_batch_id`, the rich result event by `aggregate_id` = the CJ batch id. A BOS batch
    assessed twice has its bos-keyed events matched to both CJ batches. Events of other
    topics are left out. The failure event carries the correlation id its caller passed, not
    necessarily the upload's, so only the three finalization events are checked for it. -#}
{# Each upload looks up its own events (a lateral subquery that `offset 0` keeps apart, so
    the upload's key reaches ix_event_outbox_aggregate_id): a refresh that recomputes one
    batch reads that batch's events, not the whole outbox. `not materialized`: read twice. #}
with events as not materialized (
    select * from {{ ref('stg_cj__event_outbox') }}
    where event_kind is not null
),

uploads as not materialized (
    select
        cj_batch_id,
        bos_batch_id,
        event_correlation_id
    from {{ ref('stg_cj__batch_uploads') }}
),

bos_keyed_events as (
    select
        uploads.cj_batch_id,
        uploads.event_correlation_id as expected_correlation_id,
        batch_events.*
    from uploads
    cross join lateral (
        select events.* from events
        where
            events.aggregate_id = uploads.bos_batch_id
            and events.event_kind in ('completion', 'resource', 'failure')
        -- a fence for the planner (see above), not a limit
        offset 0  -- noqa: AM09
    ) as batch_events
),

result_events as (
    select
        uploads.cj_batch_id,
        uploads.event_correlation_id as expected_correlation_id,
        batch_events.*
    from uploads
    cross join lateral (
        select events.* from events
        where
            events.aggregate_id = uploads.cj_batch_id::text
            and events.event_kind = 'result'
        -- a fence for the planner (see above), not a limit
        offset 0  -- noqa: AM09
    ) as batch_events
),

unioned as (
    select * from bos_keyed_events
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
        event_kind <> 'failure'
        and coalesce(correlation_id <> expected_correlation_id, true) as is_correlation_mismatch,
        created_at,
        published_at,
        retry_count
    from unioned
)

select * from checked
