{{ invariant_anchor_flag_agrees(
    essays=ref('stg_cj__processed_essays'),
    acknowledgements=ref('int_acknowledgements_joined_to_batches')
) }}
