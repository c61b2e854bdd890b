{#- Invariant 6: both essays of a comparison pair belong to the pair's batch.
    `pairs` is a relation name (int_comparison_pairs_joined_to_essays). -#}
{% macro invariant_pair_essays_in_batch(pairs, acknowledgements) %}
    select
        cj_batch_id,
        comparison_pair_id,
        essay_a_els_id,
        essay_a_batch_id,
        essay_b_els_id,
        essay_b_batch_id
    from {{ pairs }}
    where
        is_cross_batch_pair
        and {{ not_acknowledged(
            acknowledgements, 'cj_batch_id',
            []
        ) }}
{% endmacro %}
