{#- cj_batch_health's rows: int_batch_health's verdict with the acknowledgements
    (`cj-health ack`) applied. `issues` keeps every problem code; `acknowledged_issues` are
    those an active acknowledgement accepts (macro acknowledgement_accepts); `is_alerting`
    and `alerting_since` count only the others. cj_batch_alerts applies the acknowledgements
    again when it is read, so an acknowledgement takes effect before the next refresh. -#}
{%- set alerting = [] -%}
{%- for problem in cj_problem_codes() if problem.severity in cj_alerting_severities() -%}
    {%- do alerting.append(problem.code) -%}
{%- endfor -%}

{# `not materialized`: read twice, as a whole below and here only for the batches with an
    active acknowledgement. Judging every batch's issues one by one would cost about as
    much as the verdicts themselves (an unnest per batch), and few batches are ever
    acknowledged. #}
with health as not materialized (
    select * from {{ ref('int_batch_health') }}
),

acknowledgements as (
    select * from {{ ref('int_acknowledgements_joined_to_batches') }}
    where is_active
),

acknowledged_batch_ids as (
    select distinct cj_batch_id from acknowledgements
),

{# Each acknowledged batch looks up its own verdict (a lateral subquery that `offset 0` keeps
    apart, so the batch's id reaches the stored facts' unique index): the planner cannot
    count the acknowledgements in advance and would otherwise judge every batch. #}
acknowledged_batches as (
    select
        batch_health.cj_batch_id,
        batch_health.issues
    from acknowledged_batch_ids
    cross join lateral (
        select
            health.cj_batch_id,
            health.issues
        from health
        where health.cj_batch_id = acknowledged_batch_ids.cj_batch_id
        -- a fence for the planner (see above), not a limit
        offset 0  -- noqa: AM09
    ) as batch_health
),

batch_issues as (
    select
        acknowledged_batches.cj_batch_id,
        batch_issue.issue,
        batch_issue.issue_position
    from acknowledged_batches
    cross join
        lateral unnest(acknowledged_batches.issues)
        with ordinality as batch_issue (issue, issue_position)
),

judged_issues as (
    select
        batch_issues.cj_batch_id,
        batch_issues.issue,
        batch_issues.issue_position,
        count(acknowledgement.acknowledgement_id) > 0 as is_acknowledged
    from batch_issues
    left join acknowledgements as acknowledgement
        on
            batch_issues.cj_batch_id = acknowledgement.cj_batch_id
            and {{ acknowledgement_accepts('acknowledgement', 'batch_issues.issue') }}
    group by batch_issues.cj_batch_id, batch_issues.issue, batch_issues.issue_position
),

batch_acknowledgements as (
    select
        cj_batch_id,
        coalesce(
            array_agg(issue order by issue_position) filter (where is_acknowledged),
            array[]::text[]
        ) as acknowledged_issues,
        coalesce(
            bool_or(
                not is_acknowledged
                and issue in (
                    {%- for code in alerting %}'{{ code }}'{% if not loop.last %}, {% endif %}
                    {%- endfor %}
                )
            ),
            false
        ) as is_alerting
    from judged_issues
    group by cj_batch_id
),

acknowledged as (
    select
        health.cj_batch_id,
        health.bos_batch_id,
        health.assignment_id,
        health.course_code,
        health.grade_scale,
        health.upload_status,
        health.cj_state,
        health.expected_essay_count,
        health.essay_count,
        health.student_count,
        health.anchor_count,
        health.metadata_anchor_count,
        health.anchor_flag_mismatch_count,
        health.invalid_anchor_metadata_count,
        health.registered_anchor_count,
        health.total_comparisons,
        health.comparisons_submitted,
        health.comparisons_completed,
        health.comparisons_failed,
        health.pair_count,
        health.pairs_completed,
        health.pairs_errored,
        health.pairs_pending,
        health.partial_scoring_triggered,
        health.projection_count,
        health.anchor_projection_count,
        health.misattributed_projection_count,
        health.students_without_projection_count,
        health.invalid_projection_count,
        health.outbox_event_count,
        health.completion_event_count,
        health.result_event_count,
        health.correlation_mismatch_event_count,
        health.unpublished_event_count,
        health.abandoned_event_count,
        health.oldest_unpublished_event_at,
        health.scored_student_count,
        health.scale_separation_reliability,
        health.created_at,
        health.updated_at,
        health.completed_at,
        health.last_activity_at,
        health.issues,
        coalesce(
            batch_acknowledgements.acknowledged_issues, array[]::text[]
        ) as acknowledged_issues,
        health.health_status,
        coalesce(batch_acknowledgements.is_alerting, health.is_alerting) as is_alerting,
        case
            when coalesce(batch_acknowledgements.is_alerting, health.is_alerting)
                then health.alerting_since
        end as alerting_since
    from health
    left join batch_acknowledgements
        on health.cj_batch_id = batch_acknowledgements.cj_batch_id
)

select * from acknowledged
