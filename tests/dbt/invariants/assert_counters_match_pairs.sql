{{ invariant_counters_match_pairs(
    batches=ref('int_batch_facts'),
    acknowledgements=ref('stg_cj_monitoring__batch_acknowledgements')
) }}
