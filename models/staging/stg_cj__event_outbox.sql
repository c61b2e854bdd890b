{#- The event payload (`event_data`) is not selected, only its correlation id. -#}
with source as (
    select * from {{ source('cj', 'event_outbox') }}
),

renamed as (
    select
        id as outbox_event_id,
        aggregate_id,
        aggregate_type,
        event_type,
        topic,
        case
            when
                topic = 'huleedu.cj_assessment.completed.v1'
                and aggregate_type = 'cj_batch' then 'completion'
            when
                topic = 'huleedu.assessment.result.published.v1'
                and aggregate_type = 'assessment_result' then 'result'
            when
                topic = 'huleedu.resource.consumption.v1'
                and aggregate_type = 'resource_consumption' then 'resource'
            when
                topic = 'huleedu.cj_assessment.failed.v1'
                and aggregate_type = 'cj_batch' then 'failure'
        end as event_kind,
        event_data ->> 'correlation_id' as correlation_id,
        event_key,
        created_at,
        published_at,
        coalesce(retry_count, 0) as retry_count,
        last_error is not null as has_last_error
    from source
)

select * from renamed
