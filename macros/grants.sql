{#-
    The least-privilege reader of the monitoring views: role cj_health_reader (NOLOGIN).
    Grafana's login user is granted to it (docs/runbook.md, "Grant Grafana its reader").

    - on-run-start: create_monitoring_reader_role() creates the role when it is missing. Roles
      are cluster-wide, so a second database or a concurrent run finds it already there. A dbt
      user without CREATEROLE gets one clear error naming the statement an administrator runs.
    - the marts carry `+grants: {select: [cj_health_reader]}` (dbt_project.yml), so dbt
      grants SELECT on cj_batch_health and cj_batch_alerts and on nothing else: staging and
      intermediate views run with their owner's rights and would expose the service tables.
    - on-run-end: grant_monitoring_reader_usage() grants USAGE on the target schema, so the
      role can reach the two marts. It gets no privilege on the service schema's tables.
-#}

{% macro monitoring_reader_role() -%}
    cj_health_reader
{%- endmacro %}


{% macro create_monitoring_reader_role() -%}
do $reader$
begin
    if not exists (
        select from pg_catalog.pg_roles where rolname = '{{ monitoring_reader_role() }}'
    ) then
        begin
            create role {{ monitoring_reader_role() }} nologin;
        exception
            -- another run created it between the check and the create
            when duplicate_object or unique_violation then null;
            when insufficient_privilege then
                raise exception using
                    message = format(
                        'role {{ monitoring_reader_role() }} is missing and %s may not create roles',
                        current_user
                    ),
                    hint = 'an administrator runs: create role {{ monitoring_reader_role() }} nologin;'
                        || ' (docs/runbook.md, "Grant Grafana its reader")';
        end;
    end if;
end
$reader$
{%- endmacro %}


{% macro grant_monitoring_reader_usage() -%}
do $reader$
begin
    if exists (
        select from pg_catalog.pg_namespace where nspname = {{ cj_literal(target.schema) }}
    ) then
        grant usage on schema {{ adapter.quote(target.schema) }}
            to {{ monitoring_reader_role() }};
    end if;
end
$reader$
{%- endmacro %}
