{#- One row per batch and problem code it shows (cj_batch_health.issues, as of the last
    refresh), with when the condition began (`since`, macro cj_since_expression, the same as
    cj_batch_alerts) and the acknowledgement that accepts it now, if any (the latest, read
    live through macro acknowledgement_accepts, as cj_batch_alerts reads it). `cj-health`
    reads the incidents, `status`, `ack` and the history from here instead of re-deriving
    the rules; whether a problem alerts is cj_batch_alerts. -#}
with health as (
    select * from {{ ref('cj_batch_health') }}
),

problem_codes as (
    select * from {{ ref('cj_problem_codes') }}
),

acknowledgements as (
    select * from {{ ref('int_acknowledgements_joined_to_batches') }}
    where is_active
),

batch_issues as (
    select
        health.cj_batch_id,
        health.bos_batch_id::text as bos_batch_id,
        batch_issue.problem_code,
        health.created_at,
        health.completed_at,
        health.last_activity_at
    from health
    cross join lateral unnest(health.issues) as batch_issue (problem_code)
),

{# The latest acknowledgement accepting each issue: driven by the (few) active ones. #}
accepting as (
    select distinct on (batch_issues.cj_batch_id, batch_issues.problem_code)
        batch_issues.cj_batch_id,
        batch_issues.problem_code,
        acknowledgement.acknowledgement_id,
        acknowledgement.acknowledged_by,
        acknowledgement.acknowledged_at,
        acknowledgement.expires_at
    from acknowledgements as acknowledgement
    inner join batch_issues
        on acknowledgement.cj_batch_id = batch_issues.cj_batch_id
    where {{ acknowledgement_accepts('acknowledgement', 'batch_issues.problem_code') }}
    order by
        batch_issues.cj_batch_id asc,
        batch_issues.problem_code asc,
        acknowledgement.acknowledged_at desc,
        acknowledgement.acknowledgement_id desc
),

final as (
    select
        batch_issues.cj_batch_id,
        batch_issues.bos_batch_id,
        batch_issues.problem_code,
        problem_codes.severity,
        problem_codes.severity_rank,
        case batch_issues.problem_code
            {%- for problem in cj_problem_codes() %}
                when '{{ problem.code }}'
                    then {{ cj_since_expression(problem.since, 'batch_issues') }}
            {%- endfor %}
        end as since,
        batch_issues.created_at,
        batch_issues.last_activity_at,
        accepting.acknowledgement_id is not null as is_acknowledged,
        accepting.acknowledgement_id,
        accepting.acknowledged_by,
        accepting.acknowledged_at,
        accepting.expires_at as acknowledgement_expires_at
    from batch_issues
    inner join problem_codes
        on batch_issues.problem_code = problem_codes.problem_code
    left join accepting
        on
            batch_issues.cj_batch_id = accepting.cj_batch_id
            and batch_issues.problem_code = accepting.problem_code
)

select * from final
