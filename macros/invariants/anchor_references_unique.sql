{#- Invariant 8: anchor references are unique per (assignment, label, scale); two references
    without an assignment count as the same assignment here (the table's unique constraint
    lets them through).
    `anchor_references` is a relation name (stg_cj__anchor_essay_references). -#}
{% macro invariant_anchor_references_unique(anchor_references) %}
    select
        assignment_id,
        anchor_label,
        grade_scale,
        count(*) as reference_count,
        min(anchor_reference_id) as first_anchor_reference_id,
        max(anchor_reference_id) as last_anchor_reference_id
    from {{ anchor_references }}
    group by assignment_id, anchor_label, grade_scale
    having count(*) > 1
{% endmacro %}
