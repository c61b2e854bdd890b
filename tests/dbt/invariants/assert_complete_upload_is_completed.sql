{{ invariant_complete_upload_is_completed(
    batches=ref('int_batch_facts'),
    acknowledgements=ref('int_acknowledgements_joined_to_batches'),
    grace_minutes=cj_threshold('stuck_after_minutes')
) }}
