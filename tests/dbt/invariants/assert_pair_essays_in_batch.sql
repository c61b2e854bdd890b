{{ invariant_pair_essays_in_batch(
    pairs=ref('int_comparison_pairs_joined_to_essays'),
    acknowledgements=ref('stg_cj_monitoring__batch_acknowledgements')
) }}
