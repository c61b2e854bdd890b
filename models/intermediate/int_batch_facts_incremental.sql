{#- int_batch_facts kept as a table, one row per batch, so that a refresh recomputes only the
    batches whose rows changed. `dbt run` rebuilds every row here (the periodic full rebuild
    of `cj-health build`); between builds `cj-health refresh` recomputes the batches with a
    row inserted or updated since its last run and removes the facts of deleted batches
    (cj_health/batch_facts.py). The table is never dropped (`full_refresh=false`): the health
    view reads it. The post-hook forgets the refresh's change watermark, so the next refresh
    starts from this complete rebuild. -#}
{{ config(
    materialized='incremental',
    unique_key='cj_batch_id',
    incremental_strategy='delete+insert',
    on_schema_change='append_new_columns',
    full_refresh=false,
    indexes=[{'columns': ['cj_batch_id'], 'unique': true}],
    pre_hook="{{ cj_lock_batch_facts() }}",
    post_hook=[
        "{{ cj_delete_facts_of_deleted_batches() }}",
        "{{ cj_reset_batch_facts_watermark() }}",
    ]
) }}

-- depends_on: {{ ref('stg_cj__batch_uploads') }}
select * from {{ ref('int_batch_facts') }}
