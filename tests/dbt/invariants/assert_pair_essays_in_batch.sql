{{ invariant_pair_essays_in_batch(
    pairs=ref('int_comparison_pairs_joined_to_essays'),
    acknowledgements=ref('int_acknowledgements_joined_to_batches')
) }}
