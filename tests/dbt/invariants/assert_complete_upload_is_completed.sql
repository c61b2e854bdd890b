{{ invariant_complete_upload_is_completed(
    batches=ref('int_batch_facts'),
    grace_minutes=cj_threshold('stuck_after_minutes')
) }}
