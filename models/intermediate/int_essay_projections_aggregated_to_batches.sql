{#- Essay facts per batch, each essay with its projection in the batch (the essay rows of
    int_essays_joined_to_projections: projections without an essay in the batch are counted
    by int_batch_facts, from int_grade_projections_aggregated_to_batches).

    Scale separation reliability (SSR) of the students' Bradley-Terry scores:
    (variance of the scores - mean squared standard error) / variance of the scores, over
    student essays with both a score and a standard error; null below 3 such essays or when the
    scores do not vary; clamped at 0 below (error larger than the spread means no
    separation at all).

    The sums behind the variance and the mean are exact, so the same rows give the same value
    in whatever order a plan reads them (over double precision, a batch recomputed alone and
    every batch recomputed together differed in the last bits, and a full rebuild rewrote
    unchanged rows). Each score and squared error is taken in fixed point, as a whole number
    of 2^-32 (`fixed_point_scale`), and summed as integers: exact, and far cheaper than
    converting every double to numeric. That rounds a value by at most 1.2e-10. A score of
    1e9 or more in size, a standard error of 1e4 or more, or one that is not a finite number
    has no fixed-point value, and its essay is left out of both sums. -#}
{%- set fixed_point_scale = 4294967296 -%}

with essay_projections as (
    select * from {{ ref('int_essays_joined_to_projections') }}
    where has_essay
),

fixed_point as (
    select
        *,
        case
            when abs(bt_score) < 1e9 then (bt_score * {{ fixed_point_scale }})::bigint
        end as bt_score_fixed,
        case
            when abs(bt_se) < 1e4 then (bt_se * bt_se * {{ fixed_point_scale }})::bigint
        end as bt_squared_se_fixed
    from essay_projections
),

{# The variance and the mean are taken over the same essays: those with both values. #}
with_fixed_point as (
    select
        *,
        bt_score_fixed is not null
        and bt_squared_se_fixed is not null as has_fixed_point_values
    from fixed_point
),

aggregated as (
    select
        cj_batch_id,
        count(*) as essay_count,
        count(*) filter (where is_student) as student_count,
        count(*) filter (where is_anchor) as anchor_count,
        count(*) filter (where metadata_is_anchor) as metadata_anchor_count,
        count(*) filter (where is_anchor_flag_mismatch) as anchor_flag_mismatch_count,
        count(*) filter (where metadata_is_anchor_invalid) as invalid_anchor_metadata_count,
        count(*) filter (where has_projection) as matched_projection_count,
        count(*) filter (where is_anchor_projection) as anchor_projection_count,
        count(*) filter (
            where is_student_without_projection
        ) as students_without_projection_count,
        count(*) filter (
            where is_student and bt_score is not null and bt_se is not null
        ) as scored_student_count,
        (
            var_samp(bt_score_fixed) filter (where is_student and has_fixed_point_values)
            / {{ fixed_point_scale }}::numeric ^ 2
        )::double precision as student_score_variance,
        (
            avg(bt_squared_se_fixed) filter (where is_student and has_fixed_point_values)
            / {{ fixed_point_scale }}
        )::double precision as student_mean_squared_se
    from with_fixed_point
    group by cj_batch_id
),

with_reliability as (
    select
        *,
        case
            when scored_student_count >= 3 and student_score_variance > 0
                then greatest(
                    0.0,
                    (student_score_variance - student_mean_squared_se) / student_score_variance
                )
        end as scale_separation_reliability
    from aggregated
)

select * from with_reliability
