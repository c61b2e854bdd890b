{#- Invariant 4: projections belong to their essay's batch, and no anchor is projected.
    `essay_projections` is a relation name (int_essays_joined_to_projections). -#}
{% macro invariant_projections_attributed(essay_projections, acknowledgements) %}
    select
        cj_batch_id,
        els_essay_id,
        case
            when is_misattributed_projection then 'essay of another batch'
            else 'anchor essay'
        end as violation
    from {{ essay_projections }}
    where
        (is_misattributed_projection or is_anchor_projection)
        and {{ not_acknowledged(
            acknowledgements, 'cj_batch_id',
            ['ANCHOR_PROJECTED', 'MISATTRIBUTED_PROJECTION']
        ) }}
{% endmacro %}
