{#- Not one of the nine data invariants but the sum of all problem codes: no batch in the
    health view is alerting. Fails for every known fault, including those that only a time
    threshold or a statistic reveals (STALLED, LOW_RELIABILITY).
    `batch_health` is a relation name (cj_batch_health). -#}
{% macro invariant_no_batch_alerting(batch_health) %}
    select
        cj_batch_id,
        health_status,
        issues
    from {{ batch_health }}
    where is_alerting
{% endmacro %}
