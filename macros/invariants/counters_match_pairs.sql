{#- Invariant 7: once a batch is COMPLETED, its counters agree with its pairs: submitted =
    all pairs, completed = pairs with a winner, failed = pairs that errored.
    `batches` is a relation name (int_batch_facts). -#}
{% macro invariant_counters_match_pairs(batches, acknowledgements) %}
    select
        cj_batch_id,
        comparisons_submitted,
        pair_count,
        comparisons_completed,
        pairs_completed,
        comparisons_failed,
        pairs_errored
    from {{ batches }}
    where
        (is_state_completed and not counters_agree_with_pairs)
        and {{ not_acknowledged(
            acknowledgements, 'cj_batch_id',
            ['COUNTER_MISMATCH']
        ) }}
{% endmacro %}
