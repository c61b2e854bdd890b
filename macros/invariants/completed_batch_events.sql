{#- Invariant 9: a COMPLETED batch has its two outbox events (the thin completion event and
    the rich result event), each with the upload's `event_correlation_id`.
    `batches` is a relation name (int_batch_facts). -#}
{% macro invariant_completed_batch_events(batches, acknowledgements) %}
    select
        cj_batch_id,
        bos_batch_id,
        completion_event_count,
        result_event_count,
        correlation_mismatch_event_count
    from {{ batches }}
    where
        (
            has_missing_events
            or (is_state_completed and correlation_mismatch_event_count > 0)
        )
        and {{ not_acknowledged(
            acknowledgements, 'cj_batch_id',
            ['EVENTS_MISSING', 'EVENT_CORRELATION_MISMATCH']
        ) }}
{% endmacro %}
