{#- One row per batch and problem that is alerting now: a problem code of the batch
    (cj_batch_health.issues) of an alerting severity that no active acknowledgement accepts.
    The acknowledgements are read live, so `cj-health ack` silences at once, and an expired
    acknowledgement or `cj-health unack` alerts again at once, without waiting for the next
    refresh. `since` is when the condition began as far as the data tells (macro
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
    select * from {{ ref('int_acknowledgements_joined_to_batches') }}
    where is_active
),

acknowledged_health as (
    select * from {{ ref('cj_batch_health') }}
),

{# The issues of each acknowledged batch that an active acknowledgement accepts: driven by
    the (few) acknowledgements, each finding its batch by the unique index. #}
accepted_issues as (
    select
        acknowledgement.cj_batch_id,
        batch_issue.issue
    from acknowledgements as acknowledgement
    inner join acknowledged_health
        on acknowledgement.cj_batch_id = acknowledged_health.cj_batch_id
    cross join lateral unnest(acknowledged_health.issues) as batch_issue (issue)
    where {{ acknowledgement_accepts('acknowledgement', 'batch_issue.issue') }}
),

batch_acknowledgements as (
    select
        cj_batch_id,
        array_agg(distinct issue order by issue) as acknowledged_issues
    from accepted_issues
    group by cj_batch_id
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
        problem_codes.problem_code as issue,
        problem_codes.severity,
        problem_codes.severity_rank
    from problem_codes
    inner join health on health.issues @> array[problem_codes.problem_code]
),

alerts as (
    select
        batch_issues.cj_batch_id,
        batch_issues.issue,
        batch_issues.severity,
        case batch_issues.issue
            {%- for problem in cj_problem_codes() %}
                when '{{ problem.code }}'
                    then {{ cj_since_expression(problem.since, 'batch_issues') }}
            {%- endfor %}
        end as since,
        coalesce(
            batch_acknowledgements.acknowledged_issues, array[]::text[]
        ) as acknowledged_issues,
        refresh.refreshed_at,
        batch_issues.bos_batch_id::text as bos_batch_id,
        batch_issues.assignment_id::text as assignment_id,
        batch_issues.upload_status,
        batch_issues.cj_state,
        batch_issues.health_status,
        batch_issues.last_activity_at,
        extract(epoch from now() - batch_issues.last_activity_at)::double precision
        / 60.0 as minutes_since_activity
    from batch_issues
    cross join refresh
    left join batch_acknowledgements
        on batch_issues.cj_batch_id = batch_acknowledgements.cj_batch_id
    where
        not coalesce(
            batch_issues.issue = any(batch_acknowledgements.acknowledged_issues), false
        )
)

select * from alerts
