{#- Invariant 1: `is_anchor` agrees with processing_metadata.is_anchor wherever the key is
    present. A value that is neither boolean, 'true'/'false' nor 1/0 cannot agree and fails.
    `essays` is a relation name. -#}
{% macro invariant_anchor_flag_agrees(essays, acknowledgements) %}
    select
        cj_batch_id,
        els_essay_id,
        is_anchor,
        metadata_is_anchor,
        metadata_is_anchor_invalid,
        metadata_is_anchor_raw
    from {{ essays }}
    where
        (is_anchor_flag_mismatch or metadata_is_anchor_invalid)
        and {{ not_acknowledged(
            acknowledgements, 'cj_batch_id',
            ['ANCHOR_FLAG_MISMATCH', 'INVALID_ANCHOR_METADATA']
        ) }}
{% endmacro %}
