{#- Everything known about each batch, one row per upload, without any judgement that needs a
    clock or a threshold. The rule columns at the end (`projections_expected` ...) are the one
    definition that both the problem codes (int_batch_health) and the invariants
    (macros/invariants) use. -#}
{# `not materialized`: read twice below, and a condition on one batch (the refresh
    recomputing a few batches) must still reach the table's primary key. #}
with uploads as not materialized (
    select * from {{ ref('stg_cj__batch_uploads') }}
),

states as (
    select * from {{ ref('stg_cj__batch_states') }}
),

essays as (
    select * from {{ ref('int_essay_projections_aggregated_to_batches') }}
),

projections as (
    select * from {{ ref('int_grade_projections_aggregated_to_batches') }}
),

pairs as (
    select * from {{ ref('int_comparison_pairs_aggregated_to_batches') }}
),

events as (
    select * from {{ ref('int_outbox_events_aggregated_to_batches') }}
),

anchor_references as (
    select * from {{ ref('int_anchor_references_aggregated_to_assignments') }}
),

instructions as (
    select * from {{ ref('stg_cj__assessment_instructions') }}
),

assignment_instructions as (
    select
        assignment_id,
        grade_scale
    from instructions
    where assignment_id is not null
),

{# Several instructions of one course: the newest decides. #}
course_instructions as (
    select distinct on (course_id)
        course_id,
        grade_scale
    from instructions
    where course_id is not null
    order by course_id asc, assessment_instruction_id desc
),

{# A batch's grade scale as production picks it: the assignment's instruction, else the
    course's (course_id = course_code), else swedish_8_anchor. #}
scales as (
    select
        uploads.cj_batch_id,
        coalesce(
            assignment_instructions.grade_scale,
            course_instructions.grade_scale,
            'swedish_8_anchor'
        ) as grade_scale
    from uploads
    left join assignment_instructions
        on uploads.assignment_id = assignment_instructions.assignment_id
    left join course_instructions
        on uploads.course_code = course_instructions.course_id
),

joined as (
    select
        uploads.cj_batch_id,
        uploads.bos_batch_id,
        uploads.assignment_id,
        uploads.course_code,
        scales.grade_scale,
        uploads.upload_status,
        uploads.is_upload_complete,
        uploads.is_upload_error,
        states.cj_state,
        uploads.expected_essay_count,
        coalesce(essays.essay_count, 0) as essay_count,
        coalesce(essays.student_count, 0) as student_count,
        coalesce(essays.anchor_count, 0) as anchor_count,
        coalesce(essays.metadata_anchor_count, 0) as metadata_anchor_count,
        coalesce(essays.anchor_flag_mismatch_count, 0) as anchor_flag_mismatch_count,
        coalesce(essays.invalid_anchor_metadata_count, 0) as invalid_anchor_metadata_count,
        coalesce(anchor_references.registered_anchor_count, 0) as registered_anchor_count,
        states.total_comparisons,
        coalesce(states.comparisons_submitted, 0) as comparisons_submitted,
        coalesce(states.comparisons_completed, 0) as comparisons_completed,
        coalesce(states.comparisons_failed, 0) as comparisons_failed,
        coalesce(pairs.pair_count, 0) as pair_count,
        coalesce(pairs.pairs_completed, 0) as pairs_completed,
        coalesce(pairs.pairs_errored, 0) as pairs_errored,
        coalesce(pairs.pairs_pending, 0) as pairs_pending,
        coalesce(states.partial_scoring_triggered, false) as partial_scoring_triggered,
        coalesce(projections.projection_count, 0) as projection_count,
        coalesce(essays.anchor_projection_count, 0) as anchor_projection_count,
        {#- A projection filed under the batch without its essay there: each projection
            matches at most one of the batch's essays and each essay at most one projection
            (both keys are primary keys), so these are the projections less the matched ones,
            the count of int_essays_joined_to_projections' is_misattributed_projection rows. #}
        coalesce(projections.projection_count, 0)
        - coalesce(essays.matched_projection_count, 0) as misattributed_projection_count,
        coalesce(
            essays.students_without_projection_count, 0
        ) as students_without_projection_count,
        coalesce(projections.invalid_projection_count, 0) as invalid_projection_count,
        coalesce(events.outbox_event_count, 0) as outbox_event_count,
        coalesce(events.completion_event_count, 0) as completion_event_count,
        coalesce(events.result_event_count, 0) as result_event_count,
        coalesce(
            events.correlation_mismatch_event_count, 0
        ) as correlation_mismatch_event_count,
        coalesce(events.unpublished_event_count, 0) as unpublished_event_count,
        coalesce(events.abandoned_event_count, 0) as abandoned_event_count,
        events.oldest_unpublished_event_at,
        coalesce(essays.scored_student_count, 0) as scored_student_count,
        essays.scale_separation_reliability,
        uploads.created_at,
        uploads.updated_at,
        uploads.completed_at,
        states.last_activity_at as state_last_activity_at,
        greatest(states.last_activity_at, uploads.updated_at) as last_activity_at
    from uploads
    left join states on uploads.cj_batch_id = states.cj_batch_id
    left join essays on uploads.cj_batch_id = essays.cj_batch_id
    left join projections on uploads.cj_batch_id = projections.cj_batch_id
    left join pairs on uploads.cj_batch_id = pairs.cj_batch_id
    left join events on uploads.cj_batch_id = events.cj_batch_id
    left join scales on uploads.cj_batch_id = scales.cj_batch_id
    left join anchor_references
        on
            uploads.assignment_id = anchor_references.assignment_id
            and scales.grade_scale = anchor_references.grade_scale
),

rules as (
    select
        *,
        coalesce(cj_state = 'COMPLETED', false) as is_state_completed,
        is_upload_complete
        and (
            coalesce(cj_state <> 'COMPLETED', true)
            or (completed_at is null and upload_status <> 'COMPLETE_INSUFFICIENT_ESSAYS')
        ) as is_finalization_incomplete,
        coalesce(
            cj_state = 'COMPLETED'
            and (
                not is_upload_complete
                or (completed_at is null and upload_status <> 'COMPLETE_INSUFFICIENT_ESSAYS')
            ),
            false
        ) as is_completed_state_inconsistent,
        {# Production adds anchors only to a batch with an assignment that has anchors
            registered for the batch's scale; a single-essay batch
            (COMPLETE_INSUFFICIENT_ESSAYS) is finished without scoring. The finalizer of
            such a batch sets no completed_at. #}
        (registered_anchor_count > 0 or metadata_anchor_count > 0)
        and upload_status <> 'COMPLETE_INSUFFICIENT_ESSAYS' as anchors_expected,
        coalesce(
            cj_state = 'COMPLETED'
            and upload_status <> 'COMPLETE_INSUFFICIENT_ESSAYS'
            and (anchor_count > 0 or metadata_anchor_count > 0),
            false
        ) as projections_expected,
        comparisons_submitted = pair_count
        and comparisons_completed = pairs_completed
        and comparisons_failed = pairs_errored as counters_agree_with_pairs,
        coalesce(
            cj_state = 'COMPLETED' and (completion_event_count = 0 or result_event_count = 0),
            false
        ) as has_missing_events
    from joined
)

select * from rules
