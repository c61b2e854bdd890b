{#- Invariant 3: a COMPLETED batch with anchors has one projection per student essay. Lists
    each student essay of such a batch that has no projection in its batch (at most one per
    essay and batch: the table's primary key).
    `essay_projections` (int_essays_joined_to_projections) and `batches`
    (int_batch_facts) are relation names. -#}
{% macro invariant_student_essays_projected(essay_projections, batches, acknowledgements) %}
    select
        essay_projections.cj_batch_id,
        essay_projections.els_essay_id,
        batches.cj_state,
        batches.anchor_count,
        batches.metadata_anchor_count
    from {{ essay_projections }} as essay_projections
    inner join {{ batches }} as batches
        on essay_projections.cj_batch_id = batches.cj_batch_id
    where
        batches.projections_expected
        and essay_projections.is_student_without_projection
        and {{ not_acknowledged(
            acknowledgements, 'essay_projections.cj_batch_id',
            ['MISSING_PROJECTIONS']
        ) }}
{% endmacro %}
