{#- The health verdict of each batch: its problem codes (`issues`, worst first), the worst of
    them or a baseline as `health_status`, and `is_alerting`. cj_batch_health is a
    materialized copy of this view; the dbt unit tests exercise every rule here. Time is
    judged at cj_health_as_of(): now() when the view is refreshed. No column holds that time
    or the minutes since activity, so the row of a batch whose verdict did not change stays
    the same row: REFRESH ... CONCURRENTLY rewrites only the batches that changed. The
    refresh time is kept once, in cj_batch_health_refresh. The facts come from the stored
    table int_batch_facts_incremental, which a refresh updates only for the batches whose
    rows changed; the clock-based rules here are judged for every batch at every refresh. -#}
{%- set codes = cj_problem_codes() -%}
{%- set alerting = [] -%}
{%- for problem in codes if problem.severity in cj_alerting_severities() -%}
    {%- do alerting.append(problem) -%}
{%- endfor -%}

with facts as (
    select * from {{ ref('int_batch_facts_incremental') }}
),

timed as (
    select
        *,
        extract(epoch from {{ cj_health_as_of() }} - last_activity_at)::double precision
        / 60.0 as minutes_since_activity
    from facts
),

{# The rules, and below the list of codes, each sit in a one-row lateral subquery that
    `offset 0` keeps apart: otherwise PostgreSQL would inline every rule into each column
    that reads it (the codes, `health_status`, `is_alerting`, `alerting_since`) and judge each
    batch several times over, at each concurrent refresh. A condition on `cj_batch_id` still
    reaches the stored facts' unique index. #}
judged as (
    select
        timed.*,
        rules.*
    from timed
    cross join lateral (  -- noqa: ST05
        select
            coalesce(
                is_upload_complete
                and cj_state in ('WAITING_CALLBACKS', 'SCORING')
                and projection_count = 0
                and minutes_since_activity > {{ cj_threshold('stuck_after_minutes') }},
                false
            ) as has_stuck_finalization,
            coalesce(
                cj_state = 'SCORING'
                and minutes_since_activity > {{ cj_threshold('scoring_timeout_minutes') }},
                false
            ) as has_scoring_too_long,
            coalesce(
                is_finalization_incomplete
                and minutes_since_activity > {{ cj_threshold('stuck_after_minutes') }},
                false
            )
            or is_completed_state_inconsistent as has_completion_inconsistent,
            projections_expected
            and students_without_projection_count > 0 as has_missing_projections,
            anchor_flag_mismatch_count > 0 as has_anchor_flag_mismatch,
            anchors_expected
            and essay_count > 0
            and anchor_count = 0
            and coalesce(cj_state <> 'INITIALIZING', true) as has_no_anchors,
            anchor_projection_count > 0 as has_anchor_projected,
            misattributed_projection_count > 0 as has_misattributed_projection,
            has_missing_events as has_events_missing,
            correlation_mismatch_event_count > 0 as has_event_correlation_mismatch,
            abandoned_event_count > 0
            or coalesce(
                oldest_unpublished_event_at
                < {{ cj_health_as_of() }}
                - interval '1 minute' * {{ cj_threshold('unpublished_after_minutes') }},
                false
            ) as has_events_unpublished,
            {#- An ERROR_* upload is finished: the service's error path sets the status
                wherever the state machine stood and sends its failure event. #}
            coalesce(
                cj_state in ('INITIALIZING', 'GENERATING_PAIRS', 'WAITING_CALLBACKS')
                and not is_upload_error
                and minutes_since_activity > {{ cj_threshold('stalled_after_minutes') }},
                false
            ) as has_stalled,
            is_state_completed and not counters_agree_with_pairs as has_counter_mismatch,
            invalid_projection_count > 0 as has_invalid_projection,
            invalid_anchor_metadata_count > 0 as has_invalid_anchor_metadata,
            coalesce(
                (is_state_completed or is_upload_complete)
                and scored_student_count >= {{ cj_threshold('min_reliability_students') }}
                and scale_separation_reliability < {{ cj_threshold('min_reliability') }},
                false
            ) as has_low_reliability
        -- a fence for the planner (see above), not a limit
        offset 0  -- noqa: AM09, PRS
    ) as rules
),

listed as (
    select
        judged.*,
        issue_list.issues
    from judged
    cross join lateral (  -- noqa: ST05
        select
            array_remove(
                array[
                    {%- for problem in codes %}
                        case
                            when judged.has_{{ problem.code | lower }}
                                then '{{ problem.code }}'
                        end
                        {%- if not loop.last %},{% endif %}
                    {%- endfor %}
                ]::text[],
                null
            ) as issues
        -- a fence for the planner (see above), not a limit
        offset 0  -- noqa: AM09, PRS
    ) as issue_list
),

verdict as (
    select
        *,
        coalesce(
            issues[1],
            case
                when cj_state in ('FAILED', 'CANCELLED') or is_upload_error then 'FAILED'
                when cj_state = 'COMPLETED' then 'HEALTHY'
                else 'IN_PROGRESS'
            end
        ) as health_status,
        issues && array[
            {%- for problem in alerting %}'{{ problem.code }}'{% if not loop.last %}, {% endif %}
            {%- endfor %}
        ]::text[] as is_alerting,
        {#- Null unless alerting. Besides telling since when, it keeps REFRESH MATERIALIZED
            VIEW CONCURRENTLY cheap: its check for duplicate rows sorts every row without a
            null column, which would be most rows without this one. #}
        least(
            {%- for problem in alerting %}
                case
                    when has_{{ problem.code | lower }}
                        then {{ cj_since_expression(problem.since) }}
                end{% if not loop.last %},{% endif %}
            {%- endfor %}
        ) as alerting_since
    from listed
)

select
    cj_batch_id,
    bos_batch_id,
    assignment_id,
    course_code,
    grade_scale,
    upload_status,
    cj_state,
    expected_essay_count,
    essay_count,
    student_count,
    anchor_count,
    metadata_anchor_count,
    anchor_flag_mismatch_count,
    invalid_anchor_metadata_count,
    registered_anchor_count,
    total_comparisons,
    comparisons_submitted,
    comparisons_completed,
    comparisons_failed,
    pair_count,
    pairs_completed,
    pairs_errored,
    pairs_pending,
    partial_scoring_triggered,
    projection_count,
    anchor_projection_count,
    misattributed_projection_count,
    students_without_projection_count,
    invalid_projection_count,
    outbox_event_count,
    completion_event_count,
    result_event_count,
    correlation_mismatch_event_count,
    unpublished_event_count,
    abandoned_event_count,
    oldest_unpublished_event_at,
    scored_student_count,
    scale_separation_reliability,
    created_at,
    updated_at,
    completed_at,
    last_activity_at,
    issues,
    health_status,
    is_alerting,
    alerting_since
from verdict
