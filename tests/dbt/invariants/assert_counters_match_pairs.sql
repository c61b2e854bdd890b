{{ invariant_counters_match_pairs(
    batches=ref('int_batch_facts'),
    acknowledgements=ref('int_acknowledgements_joined_to_batches')
) }}
