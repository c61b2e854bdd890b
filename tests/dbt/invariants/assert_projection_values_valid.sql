{{ invariant_projection_values_valid(
    essay_projections=ref('int_essays_joined_to_projections'),
    acknowledgements=ref('stg_cj_monitoring__batch_acknowledgements')
) }}
