{{ invariant_counters_match_pairs(batches=ref('int_batch_facts')) }}
