{#- The monitoring view: a materialized copy of int_batch_health with the acknowledgements
    applied (int_batch_health_joined_to_acknowledgements), refreshed concurrently
    (macros/materializations/cj_materialized_view.sql; `cj-health refresh`). Its comments
    come from the post-hook: dbt's persist_docs cannot see a materialized view's columns
    (they are not in information_schema.columns). -#}
{{ config(
    materialized='cj_materialized_view',
    indexes=[
        {'columns': ['cj_batch_id'], 'unique': true},
        {'columns': ['is_alerting', 'cj_batch_id']},
        {'columns': ['issues'], 'type': 'gin'},
    ],
    on_configuration_change='apply',
    persist_docs={'relation': true, 'columns': false},
    pre_hook="{{ cj_refresh_session_settings() }}",
    post_hook="{{ cj_document_materialized_view() }}"
) }}

select * from {{ ref('int_batch_health_joined_to_acknowledgements') }}
