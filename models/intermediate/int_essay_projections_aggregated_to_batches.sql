{#- Essay and projection facts per batch, from one pass over the essay-projection join.
    Scale separation reliability (SSR) of the students' Bradley-Terry scores:
    (variance of the scores - mean squared standard error) / variance of the scores, over
    student essays with both a score and a standard error; null below 3 such essays or when the
    scores do not vary; clamped at 0 below (error larger than the spread means no
    separation at all). The variance and the mean are taken over numeric, whose sums are
    exact: the same rows give the same value in whatever order the plan reads them (over
    double precision, a batch recomputed alone and every batch recomputed together differed
    in the last bits, and a full rebuild rewrote unchanged rows). -#}
with essay_projections as (
    select * from {{ ref('int_essays_joined_to_projections') }}
),

aggregated as (
    select
        cj_batch_id,
        count(*) filter (where has_essay) as essay_count,
        count(*) filter (where is_student) as student_count,
        count(*) filter (where has_essay and is_anchor) as anchor_count,
        count(*) filter (where has_essay and metadata_is_anchor) as metadata_anchor_count,
        count(*) filter (where is_anchor_flag_mismatch) as anchor_flag_mismatch_count,
        count(*) filter (where metadata_is_anchor_invalid) as invalid_anchor_metadata_count,
        count(*) filter (where has_projection) as projection_count,
        count(*) filter (where is_anchor_projection) as anchor_projection_count,
        count(*) filter (where is_misattributed_projection) as misattributed_projection_count,
        count(*) filter (
            where is_student_without_projection
        ) as students_without_projection_count,
        count(*) filter (where has_invalid_projection_values) as invalid_projection_count,
        count(*) filter (
            where is_student and bt_score is not null and bt_se is not null
        ) as scored_student_count,
        var_samp(bt_score::numeric) filter (
            where is_student and bt_se is not null
        )::double precision as student_score_variance,
        avg((bt_se * bt_se)::numeric) filter (
            where is_student and bt_score is not null
        )::double precision as student_mean_squared_se
    from essay_projections
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
