{{ invariant_anchor_flag_agrees(
    essays=ref('stg_cj__processed_essays'),
    acknowledgements=ref('stg_cj_monitoring__batch_acknowledgements')
) }}
