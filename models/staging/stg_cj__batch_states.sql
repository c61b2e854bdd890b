with source as (
    select * from {{ source('cj', 'cj_batch_states') }}
),

renamed as (
    select
        batch_id as cj_batch_id,
        state::text as cj_state,
        total_budget,
        total_comparisons,
        coalesce(submitted_comparisons, 0) as comparisons_submitted,
        coalesce(completed_comparisons, 0) as comparisons_completed,
        coalesce(failed_comparisons, 0) as comparisons_failed,
        last_activity_at,
        coalesce(partial_scoring_triggered, false) as partial_scoring_triggered,
        completion_threshold_pct,
        current_iteration
    from source
)

select * from renamed
