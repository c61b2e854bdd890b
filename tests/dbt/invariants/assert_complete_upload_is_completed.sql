{{ invariant_complete_upload_is_completed(
    batches=ref('int_batch_facts'),
    acknowledgements=ref('stg_cj_monitoring__batch_acknowledgements'),
    grace_minutes=cj_threshold('stuck_after_minutes')
) }}
