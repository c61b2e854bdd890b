{#- Invariant 5: a projection's grade is one of its scale's grades (cj_grade_scales),
    `confidence_score` is in [0, 1], and `confidence_label` is HIGH, MID or LOW.
    `essay_projections` is a relation name (int_essays_joined_to_projections). -#}
{% macro invariant_projection_values_valid(essay_projections, acknowledgements) %}
    select
        cj_batch_id,
        els_essay_id,
        grade_scale,
        primary_grade,
        is_grade_in_scale,
        confidence_score,
        confidence_label
    from {{ essay_projections }}
    where
        has_invalid_projection_values
        and {{ not_acknowledged(
            acknowledgements, 'cj_batch_id',
            ['INVALID_PROJECTION']
        ) }}
{% endmacro %}
