{#- The materialization `cj_view`: views on PostgreSQL, replaced without ever dropping what
    readers use. It has a name of its own (the project's models are configured with
    `+materialized: cj_view` in dbt_project.yml) rather than overriding dbt's `view`, so dbt's
    own materialization stays what it is and a model reads which one it gets.

    dbt's default view materialization renames the old view away and drops it with CASCADE,
    which also drops every view built on it, including cj_batch_health and cj_batch_alerts:
    readers would find no view until the run rebuilt them, or never, if the run was killed.
    Here a view whose columns keep their names and types (new columns may be added at the
    end) is updated with `create or replace view`, which keeps its dependants. When the
    columns change incompatibly, the new view is built beside the old one and, in the model's
    one transaction, the old view is renamed to a retired name and the new one takes its
    place. Dependants keep reading the retired view (PostgreSQL binds them by oid) until the
    run rebuilds them on the new one; `cj_drop_retired_relations` (on-run-end) then drops
    every retired relation nothing depends on any more (macros/retired_relations.sql). -#}
{% materialization cj_view, adapter='postgres' %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
    {%- set preexisting_intermediate = load_cached_relation(intermediate_relation) -%}
    {%- set grant_config = config.get('grants') -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ drop_relation_if_exists(preexisting_intermediate) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if existing_relation is not none and not existing_relation.is_view -%}
        {{ adapter.drop_relation(existing_relation) }}
        {%- set existing_relation = none -%}
    {%- endif -%}

    {%- set replace_in_place = false -%}
    {%- if existing_relation is not none -%}
        {% call statement('create_intermediate') -%}
            {{ get_create_view_as_sql(intermediate_relation, sql) }}
        {%- endcall %}
        {%- set replace_in_place = cj_view_columns_compatible(
            existing_relation, intermediate_relation) -%}
        {%- if replace_in_place -%}
            {{ adapter.drop_relation(intermediate_relation) }}
        {%- endif -%}
    {%- endif -%}

    {%- if existing_relation is none -%}
        {% call statement('main') -%}
            {{ get_create_view_as_sql(target_relation, sql) }}
        {%- endcall %}
    {%- elif replace_in_place -%}
        {{ log("Replacing view in place: " ~ target_relation) }}
        {% call statement('main') -%}
            create or replace view {{ target_relation }} as (
                {{ sql }}
            );
        {%- endcall %}
    {%- else -%}
        {{ log("Columns of " ~ target_relation ~ " changed: retiring the old view") }}
        {{ adapter.rename_relation(existing_relation, cj_retired_relation(existing_relation)) }}
        {{ adapter.rename_relation(intermediate_relation, target_relation) }}
        {% call statement('main') -%}
            select 1
        {%- endcall %}
    {%- endif -%}

    {%- set should_revoke = should_revoke(existing_relation, full_refresh_mode=True) -%}
    {%- do apply_grants(target_relation, grant_config, should_revoke=should_revoke) -%}
    {%- do persist_docs(target_relation, model) -%}
    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}

    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}


{#- True when `create or replace view` can turn `existing` into `candidate`: every column of
    `existing` is in `candidate` at the same position with the same name and type. -#}
{% macro cj_view_columns_compatible(existing, candidate) %}
    {%- set old_columns = adapter.get_columns_in_relation(existing) -%}
    {%- set new_columns = adapter.get_columns_in_relation(candidate) -%}
    {%- if old_columns | length == 0 or old_columns | length > new_columns | length -%}
        {{ return(false) }}
    {%- endif -%}
    {%- for old in old_columns -%}
        {%- set new = new_columns[loop.index0] -%}
        {%- if old.name != new.name or old.data_type != new.data_type -%}
            {{ return(false) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(true) }}
{% endmacro %}
