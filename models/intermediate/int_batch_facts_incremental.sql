{#- int_batch_facts kept as a table, one row per batch, so that a refresh recomputes only the
    batches whose rows changed. `dbt run` builds it whole (macros/materializations/cj_table.sql:
    beside the old table, which is retired, never dropped under its readers); between builds
    `cj-health refresh` recomputes the batches whose service rows changed since its last run
    and removes the facts of deleted batches (cj_health/batch_facts.py). The
    pre-hook takes the refresh's lock; the post-hook forgets the refresh's change watermark,
    so the next refresh starts by recomputing every batch. -#}
{{ config(
    materialized='cj_table',
    indexes=[{'columns': ['cj_batch_id'], 'unique': true}],
    pre_hook="{{ cj_lock_batch_facts() }}",
    post_hook="{{ cj_reset_batch_facts_watermark() }}"
) }}

select * from {{ ref('int_batch_facts') }}
