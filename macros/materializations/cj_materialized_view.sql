{#- The materialization `cj_materialized_view`: dbt's `materialized_view`, except for what a
    `dbt run` does to a materialized view that exists already. It has a name of its own (a
    model asks for `materialized='cj_materialized_view'`) rather than overriding dbt's
    materialization or its adapter macro `refresh_materialized_view`, so dbt's own stay what
    they are; creating the view, `--full-refresh`, and index changes under
    `on_configuration_change='apply'` are dbt's own macros, unchanged.

    cj_batch_health is refreshed with REFRESH MATERIALIZED VIEW CONCURRENTLY so that readers
    are never blocked (dbt-postgres refreshes plainly), and rebuilt when its definition has
    changed, which dbt does not notice by itself (dbt-core #8862).

    The definition is the compiled SQL plus the names of the columns it yields (a view it
    selects * from may have gained columns). Its md5 is kept at the end of the view's comment
    (`cj_document_materialized_view`, a post-hook of the model). On `dbt run`, a stored hash
    equal to the current one means refresh; a different or missing one, or a view it reads
    that was retired (macros/materializations/cj_view.sql), means replace: build the new
    materialized view beside the old one, then in the same transaction rename the old one to
    a retired name and the new one into its place. Nothing is dropped with CASCADE, so
    cj_batch_alerts keeps reading the retired one until the run re-points it. -#}
{% materialization cj_materialized_view, adapter='postgres' %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type=this.MaterializedView) -%}
    {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
    {%- set backup_relation_type = target_relation.MaterializedView
        if existing_relation is none else existing_relation.type -%}
    {%- set backup_relation = make_backup_relation(target_relation, backup_relation_type) -%}

    {{ materialized_view_setup(backup_relation, intermediate_relation, pre_hooks) }}
    {%- set build_sql = cj_materialized_view_build_sql(
        existing_relation, target_relation, backup_relation, intermediate_relation) -%}
    {%- if build_sql == '' -%}
        {{ materialized_view_execute_no_op(target_relation) }}
    {%- else -%}
        {{ materialized_view_execute_build_sql(
            build_sql, existing_relation, target_relation, post_hooks) }}
    {%- endif -%}
    {{ materialized_view_teardown(backup_relation, intermediate_relation, post_hooks) }}

    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}


{#- The statement a `dbt run` executes: dbt's own (materialized_view_get_build_sql) unless the
    materialized view exists, is one, no `--full-refresh` was asked for and its indexes are as
    configured, which is where dbt would refresh it plainly. -#}
{% macro cj_materialized_view_build_sql(existing, target, backup, intermediate) %}
    {%- if existing is none or should_full_refresh() or not existing.is_materialized_view
        or get_materialized_view_configuration_changes(existing, config) is not none -%}
        {{ return(materialized_view_get_build_sql(existing, target, backup, intermediate)) }}
    {%- endif -%}
    {{ return(cj_refresh_or_replace_materialized_view(target)) }}
{% endmacro %}


{% macro cj_refresh_or_replace_materialized_view(relation) %}
    {%- set current_hash = cj_definition_hash(sql) -%}
    {%- set stored_hash = cj_stored_definition_hash(relation) -%}
    {%- if stored_hash != current_hash or cj_reads_retired_relation(relation) -%}
        {{- log("Definition of " ~ relation ~ " changed (" ~ stored_hash ~ " -> "
            ~ current_hash ~ "), or it reads a retired view: rebuilding it", info=true) -}}
        {{- return(cj_replace_materialized_view(relation, sql)) -}}
    {%- elif cj_is_populated(relation) -%}
        {{- return('refresh materialized view concurrently ' ~ relation) -}}
    {%- else -%}
        {{- return('refresh materialized view ' ~ relation) -}}
    {%- endif -%}
{% endmacro %}


{% macro cj_definition_hash(compiled_sql) %}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set column_names = get_columns_in_query(compiled_sql) -%}
    {{ return(local_md5(compiled_sql ~ '\n-- columns: ' ~ (column_names | join(', ')))) }}
{% endmacro %}


{% macro cj_stored_definition_hash(relation) %}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set query -%}
        select substring(
            obj_description(c.oid, 'pg_class') from 'definition-md5: ([0-9a-f]{32})'
        )
        from pg_catalog.pg_class as c
        inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
        where n.nspname = {{ cj_literal(relation.schema) }}
            and c.relname = {{ cj_literal(relation.identifier) }}
    {%- endset -%}
    {%- set result = run_query(query) -%}
    {%- if result.rows | length == 0 or result.rows[0][0] is none -%}
        {{ return('none') }}
    {%- endif -%}
    {{ return(result.rows[0][0]) }}
{% endmacro %}


{% macro cj_is_populated(relation) %}
    {%- set query -%}
        select ispopulated from pg_catalog.pg_matviews
        where schemaname = {{ cj_literal(relation.schema) }}
            and matviewname = {{ cj_literal(relation.identifier) }}
    {%- endset -%}
    {%- set result = run_query(query) -%}
    {{ return(result.rows | length > 0 and result.rows[0][0]) }}
{% endmacro %}


{#- Post-hook of a materialized view: its comment (the model's description, then the
    definition hash) and its columns' comments, which dbt's persist_docs misses because a
    materialized view's columns are not in information_schema.columns. -#}
{% macro cj_document_materialized_view() %}
    {%- if execute -%}
        {%- set comment = (model.description or '') ~ '\n\ndefinition-md5: '
            ~ cj_definition_hash(model.compiled_code) -%}
        {%- set present = get_columns_in_query(model.compiled_code) -%}
        comment on materialized view {{ this }} is {{ postgres_escape_comment(comment) }};
        {%- for column in model.columns.values() if column.description and column.name in present %}
        comment on column {{ this }}.{{ adapter.quote(column.name) }}
            is {{ postgres_escape_comment(column.description) }};
        {%- endfor %}
    {%- endif -%}
{% endmacro %}


{#- Pre-hook of cj_batch_health: var cj_refresh_settings for this transaction only
    (cj_health.build.refresh applies the same var). -#}
{% macro cj_refresh_session_settings() %}
    {%- set settings = var('cj_refresh_settings', {}) -%}
    {%- if settings -%}
        select
        {%- for name, value in settings.items() %}
            set_config(
                '{{ name | replace("'", "''") }}', '{{ value | replace("'", "''") }}', true
            )
            {%- if not loop.last %},{% endif %}
        {%- endfor %}
    {%- endif -%}
{% endmacro %}
