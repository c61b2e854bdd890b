{{ invariant_completed_batch_events(
    batches=ref('int_batch_facts'),
    acknowledgements=ref('int_acknowledgements_joined_to_batches')
) }}
