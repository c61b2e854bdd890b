{{ invariant_completed_batch_events(batches=ref('int_batch_facts')) }}
