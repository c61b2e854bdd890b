{#- One row per batch and problem that is alerting now. `since` is when the condition began
    as far as the data tells (macro cj_since_expression). -#}
with health as (
    select * from {{ ref('cj_batch_health') }}
),

problem_codes as (
    select * from {{ ref('cj_problem_codes') }}
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
    where health.is_alerting
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
        batch_issues.refreshed_at
    from batch_issues
    inner join problem_codes on batch_issues.issue = problem_codes.problem_code
    where problem_codes.is_alerting
)

select * from alerts
