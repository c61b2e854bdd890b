{#- One row per batch and problem that is alerting now: a problem code of the batch
    (cj_batch_health.issues) of an alerting severity that no active acknowledgement accepts.
    The acknowledgements are read live, so `cj-health ack` silences at once, and an expired
    acknowledgement or `cj-health unack` alerts again at once, without waiting for the next
    refresh. `since` is when the condition began as far as the data tells (macro
    cj_since_expression). -#}
with health as (
    select * from {{ ref('cj_batch_health') }}
),

problem_codes as (
    select * from {{ ref('cj_problem_codes') }}
),

acknowledgements as (
    select * from {{ ref('stg_cj_monitoring__batch_acknowledgements') }}
    where is_active
),

batch_issues as (
    select
        health.cj_batch_id,
        health.created_at,
        health.completed_at,
        health.last_activity_at,
        health.refreshed_at,
        batch_issue.issue
    from health
    cross join lateral unnest(health.issues) as batch_issue (issue)
    where cardinality(health.issues) > 0
),

judged_issues as (
    select
        batch_issues.cj_batch_id,
        batch_issues.issue,
        count(acknowledgement.acknowledgement_id) > 0 as is_acknowledged
    from batch_issues
    left join acknowledgements as acknowledgement
        on
            batch_issues.cj_batch_id = acknowledgement.cj_batch_id
            and {{ acknowledgement_accepts('acknowledgement', 'batch_issues.issue') }}
    group by batch_issues.cj_batch_id, batch_issues.issue
),

batch_acknowledgements as (
    select
        cj_batch_id,
        array_agg(issue order by issue) filter (where is_acknowledged) as acknowledged_issues
    from judged_issues
    group by cj_batch_id
),

alerts as (
    select
        batch_issues.cj_batch_id,
        batch_issues.issue,
        problem_codes.severity,
        case batch_issues.issue
            {%- for problem in cj_problem_codes() %}
                when '{{ problem.code }}'
                    then {{ cj_since_expression(problem.since, 'batch_issues') }}
            {%- endfor %}
        end as since,
        coalesce(
            batch_acknowledgements.acknowledged_issues, array[]::text[]
        ) as acknowledged_issues,
        batch_issues.refreshed_at
    from batch_issues
    inner join problem_codes on batch_issues.issue = problem_codes.problem_code
    inner join judged_issues
        on
            batch_issues.cj_batch_id = judged_issues.cj_batch_id
            and batch_issues.issue = judged_issues.issue
    left join batch_acknowledgements
        on batch_issues.cj_batch_id = batch_acknowledgements.cj_batch_id
    where problem_codes.is_alerting and not judged_issues.is_acknowledged
)

select * from alerts
