{{ invariant_anchor_references_unique(
    anchor_references=ref('stg_cj__anchor_essay_references')
) }}
