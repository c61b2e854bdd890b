{#- Invariant 2: a batch whose upload status is COMPLETE_* is in state COMPLETED with
    `completed_at` set, once `grace_minutes` have passed since its last activity.
    `batches` is a relation name (int_batch_facts). -#}
{% macro invariant_complete_upload_is_completed(batches, acknowledgements, grace_minutes) %}
    select
        cj_batch_id,
        upload_status,
        cj_state,
        completed_at,
        last_activity_at
    from {{ batches }}
    where
        (
            is_finalization_incomplete
            and last_activity_at < now() - interval '1 minute' * {{ grace_minutes | float }}
        )
        and {{ not_acknowledged(
            acknowledgements, 'cj_batch_id',
            ['STUCK_FINALIZATION', 'COMPLETION_INCONSISTENT', 'SCORING_TOO_LONG']
        ) }}
{% endmacro %}
