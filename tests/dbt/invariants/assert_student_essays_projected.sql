{{ invariant_student_essays_projected(
    essay_projections=ref('int_essays_joined_to_projections'),
    batches=ref('int_batch_facts'),
    acknowledgements=ref('int_acknowledgements_joined_to_batches')
) }}
