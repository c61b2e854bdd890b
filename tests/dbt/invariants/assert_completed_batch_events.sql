{{ invariant_completed_batch_events(
    batches=ref('int_batch_facts'),
    acknowledgements=ref('stg_cj_monitoring__batch_acknowledgements')
) }}
