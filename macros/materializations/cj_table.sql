{#- The materialization `cj_table`: tables on PostgreSQL, replaced without ever dropping what
    readers use. It has a name of its own (a model asks for `materialized='cj_table'`) rather
    than overriding dbt's `table`, so dbt's own materialization stays what it is, and it
    builds with dbt's own macros (get_create_table_as_sql, create_indexes, apply_grants,
    persist_docs).

    dbt's default table materialization renames the old table to a backup and drops it with
    CASCADE after the commit, which would also drop every view built on it (int_batch_health
    reads int_batch_facts_incremental; cj_batch_health is built on that). Here the new table
    is built beside the old one and, in the model's one transaction, the old one is renamed
    to a retired name and the new one takes its place, as for views
    (macros/materializations/cj_view.sql). Views built on the old table keep reading it
    (PostgreSQL binds them by oid) until the run replaces them, which rebinds them by name;
    `cj_drop_retired_relations` (on-run-end) then drops it once nothing depends on it. -#}
{% materialization cj_table, adapter='postgres' %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
    {%- set preexisting_intermediate = load_cached_relation(intermediate_relation) -%}
    {%- set grant_config = config.get('grants') -%}

    {{ drop_relation_if_exists(preexisting_intermediate) }}
    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% call statement('main') -%}
        {{ get_create_table_as_sql(False, intermediate_relation, sql) }}
    {%- endcall %}
    {% do create_indexes(intermediate_relation) %}

    {%- if existing_relation is not none -%}
        {{ adapter.rename_relation(existing_relation, cj_retired_relation(existing_relation)) }}
    {%- endif -%}
    {{ adapter.rename_relation(intermediate_relation, target_relation) }}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {%- set should_revoke = should_revoke(existing_relation, full_refresh_mode=True) -%}
    {%- do apply_grants(target_relation, grant_config, should_revoke=should_revoke) -%}
    {%- do persist_docs(target_relation, model) -%}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}

    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
