{#- One row: when cj_batch_health was last refreshed. `cj-health refresh` refreshes both
    materialized views in one transaction, so `refreshed_at` is the very now() the verdicts
    were judged at; `dbt run` refreshes this one right after cj_batch_health. Kept here, once,
    instead of on every health row: an unchanged batch stays an unchanged row, and
    REFRESH ... CONCURRENTLY rewrites only the batches whose verdict changed. -#}
-- depends_on: {{ ref('cj_batch_health') }}
{{ config(
    materialized='cj_materialized_view',
    indexes=[
        {'columns': ['refreshed_at'], 'unique': true},
    ],
    on_configuration_change='apply',
    persist_docs={'relation': true, 'columns': false},
    post_hook="{{ cj_document_materialized_view() }}"
) }}

select {{ cj_health_as_of() }} as refreshed_at
