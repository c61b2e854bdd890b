{{ invariant_projection_values_valid(
    essay_projections=ref('int_essays_joined_to_projections'),
    acknowledgements=ref('int_acknowledgements_joined_to_batches')
) }}
