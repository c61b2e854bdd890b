{#- One row per batch and problem that is alerting now: a problem code of the batch
    (cj_batch_health.issues) of an alerting severity that no active acknowledgement accepts.
    The acknowledgements are read live (int_batch_acknowledgements_aggregated_to_batches:
    which codes of each batch they accept), so `cj-health ack` silences at once, and an
    expired acknowledgement or `cj-health unack` alerts again at once, without waiting for
    the next refresh. `since` is when the condition began as far as the data tells (macro
    cj_since_expression); `minutes_since_activity` is computed when the view is read.

    Each row carries what the alert rules show (bos_batch_id, state, ...), so no rule joins
    back to cj_batch_health. The health rows of a code are found through the GIN index on
    `issues` (`issues @> array[code]`): a rule that asks for one code, or a few, reads only
    the batches that have it. Every CTE is referenced once, so the planner inlines them and
    pushes the rule's `where issue = ...` down to that index. -#}
with problem_codes as (
    select * from {{ ref('cj_problem_codes') }}
    where is_alerting
),

health as (
    select * from {{ ref('cj_batch_health') }}
),

refresh as (
    select * from {{ ref('cj_batch_health_refresh') }}
),

acknowledgements as (
    select * from {{ ref('int_batch_acknowledgements_aggregated_to_batches') }}
),

batch_issues as (
    select
        health.cj_batch_id,
        health.bos_batch_id,
        health.assignment_id,
        health.upload_status,
        health.cj_state,
        health.health_status,
        health.created_at,
        health.completed_at,
        health.last_activity_at,
        health.issues,
        problem_codes.problem_code as issue,
        problem_codes.severity,
        problem_codes.severity_rank
    from problem_codes
    inner join health on health.issues @> array[problem_codes.problem_code]
),

{# The issues of the batch its acknowledgements accept, from the row's own `issues`: no
    second read of the health view. #}
acknowledged as (
    select
        batch_issues.*,
        coalesce(
            acknowledgements.accepts_every_issue
            or batch_issues.issue = any(acknowledgements.accepted_issues),
            false
        ) as is_acknowledged,
        case
            when acknowledgements.cj_batch_id is null then array[]::text[]
            else array(
                select batch_issue.issue
                from unnest(batch_issues.issues) as batch_issue (issue)
                where
                    acknowledgements.accepts_every_issue
                    or batch_issue.issue = any(acknowledgements.accepted_issues)
                order by batch_issue.issue
            )
        end as acknowledged_issues
    from batch_issues
    left join acknowledgements
        on batch_issues.cj_batch_id = acknowledgements.cj_batch_id
),

alerts as (
    select
        acknowledged.cj_batch_id,
        acknowledged.issue,
        acknowledged.severity,
        case acknowledged.issue
            {%- for problem in cj_problem_codes() %}
                when '{{ problem.code }}'
                    then {{ cj_since_expression(problem.since, 'acknowledged') }}
            {%- endfor %}
        end as since,
        acknowledged.acknowledged_issues,
        refresh.refreshed_at,
        acknowledged.bos_batch_id::text as bos_batch_id,
        acknowledged.assignment_id::text as assignment_id,
        acknowledged.upload_status,
        acknowledged.cj_state,
        acknowledged.health_status,
        acknowledged.last_activity_at,
        extract(epoch from now() - acknowledged.last_activity_at)::double precision
        / 60.0 as minutes_since_activity
    from acknowledged
    cross join refresh
    where not acknowledged.is_acknowledged
)

select * from alerts
