{#- Views that never vanish, and schema names that never reach SQL unchecked.

    A model whose relation cannot be replaced in place (a view whose columns changed type, the
    materialized view whose definition changed, a table) is built beside the old one; then, in the
    model's one transaction, the old relation is renamed to a retired name
    (`<name>__cj_retired_<run>`) and the new one renamed into place. Readers wait on the lock
    for the two renames and never find the relation missing; a run killed at any moment leaves
    each relation either old or new. Relations built on a retired one keep reading it (by oid)
    until the run rebuilds them on the new one: `create or replace view` re-binds a view,
    and the materialized view is rebuilt when it reads a retired relation.
    `cj_drop_retired_relations` (on-run-end) drops every retired relation nothing depends on
    any more, never with CASCADE: one still in use stays until a later run frees it. -#}

{% macro cj_retired_suffix() -%}
    __cj_retired_
{%- endmacro %}


{#- The retired name of `relation`: at most 63 characters, unique per dbt invocation. -#}
{% macro cj_retired_relation(relation) %}
    {%- set name = relation.identifier[:40] ~ cj_retired_suffix() ~ invocation_id[:8] -%}
    {{ return(relation.incorporate(path={'identifier': name})) }}
{% endmacro %}


{#- A SQL string literal of `value`, quotes doubled. -#}
{% macro cj_literal(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}


{#- True when the materialized view `relation` reads a retired relation. -#}
{% macro cj_reads_retired_relation(relation) %}
    {%- if not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set query -%}
        select count(*)
        from pg_catalog.pg_class as mv
        inner join pg_catalog.pg_namespace as n on mv.relnamespace = n.oid
        inner join pg_catalog.pg_rewrite as rw on rw.ev_class = mv.oid
        inner join pg_catalog.pg_depend as d
            on d.classid = 'pg_catalog.pg_rewrite'::regclass and d.objid = rw.oid
        inner join pg_catalog.pg_class as used on d.refobjid = used.oid
        where
            n.nspname = {{ cj_literal(relation.schema) }}
            and mv.relname = {{ cj_literal(relation.identifier) }}
            and strpos(used.relname, {{ cj_literal(cj_retired_suffix()) }}) > 0
    {%- endset -%}
    {{ return(run_query(query).rows[0][0] > 0) }}
{% endmacro %}


{#- Replace the materialized view `relation` by one built from `sql`: build it (and its
    indexes) beside the old one, retire the old one, rename the new one into place. -#}
{% macro cj_replace_materialized_view(relation, sql) %}
    {%- set intermediate = make_intermediate_relation(relation) -%}
    {%- set retired = cj_retired_relation(relation) -%}
    drop materialized view if exists {{ intermediate }};
    {{ get_create_materialized_view_as_sql(intermediate, sql) }};
    alter materialized view {{ relation }} rename to {{ adapter.quote(retired.identifier) }};
    alter materialized view {{ intermediate }} rename to {{ adapter.quote(relation.identifier) }}
{% endmacro %}


{#- on-run-end: drop the retired relations of the target schema that nothing depends on, the
    dependants first; never CASCADE. -#}
{% macro cj_drop_retired_relations() -%}
do $retired$
declare
    retired record;
    dropped integer;
begin
    loop
        dropped := 0;
        for retired in
            select c.relname, c.relkind
            from pg_catalog.pg_class as c
            inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
            where
                n.nspname = {{ cj_literal(target.schema) }}
                and c.relkind in ('v', 'm', 'r')
                and strpos(c.relname, {{ cj_literal(cj_retired_suffix()) }}) > 0
                and not exists (
                    select
                    from pg_catalog.pg_depend as d
                    inner join pg_catalog.pg_rewrite as rw
                        on d.classid = 'pg_catalog.pg_rewrite'::regclass and d.objid = rw.oid
                    where d.refobjid = c.oid and rw.ev_class <> c.oid
                )
        loop
            execute format(
                'drop %s %I.%I',
                case retired.relkind
                    when 'm' then 'materialized view' when 'r' then 'table' else 'view'
                end,
                {{ cj_literal(target.schema) }},
                retired.relname
            );
            dropped := dropped + 1;
        end loop;
        exit when dropped = 0;
    end loop;
end
$retired$
{%- endmacro %}


{#- A schema name must be a plain lowercase identifier: dbt quotes identifiers without
    escaping a `"` inside them, and dbt-postgres splices the target schema into string
    literals. `cj-health` refuses other names before dbt starts (exit 2); this guards plain
    `dbt` runs. -#}
{% macro cj_require_plain_identifier(value, setting) %}
    {%- if not modules.re.fullmatch('[a-z_][a-z0-9_]{0,62}', value | string) -%}
        {{ exceptions.raise_compiler_error(
            setting ~ " must be a plain lowercase identifier (letters, digits, _), got "
            ~ (value | string | tojson)) }}
    {%- endif -%}
{% endmacro %}


{% macro cj_source_schema() %}
    {{ return(var('cj_source_schema', env_var('CJ_SOURCE_SCHEMA', 'public'))) }}
{% endmacro %}


{#- on-run-start: both schema settings are plain identifiers. -#}
{% macro cj_check_schema_settings() %}
    {%- do cj_require_plain_identifier(target.schema, 'CJ_MONITORING_SCHEMA (the target schema)') -%}
    {%- do cj_require_plain_identifier(
        cj_source_schema(), 'CJ_SOURCE_SCHEMA (var cj_source_schema)') -%}
    select 1
{% endmacro %}
