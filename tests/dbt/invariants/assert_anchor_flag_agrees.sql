{{ invariant_anchor_flag_agrees(essays=ref('stg_cj__processed_essays')) }}
