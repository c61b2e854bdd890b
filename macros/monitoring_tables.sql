{#-
    The monitoring's own tables, kept over time in the target schema (default cj_monitoring):

    - cj_health_history: one point per refresh of cj_batch_health (counts per health_status
      and per problem code, alerting and acknowledged counts);
    - cj_batch_incidents: one row per batch (cj_batch_id and its bos_batch_id) and problem
      code from the refresh it was first seen (first_seen_at) to the refresh it was gone
      (cleared_at); `since` is when the condition began as far as the data tells (the same
      `since` as cj_batch_alerts: the batch's last activity, its completion or its creation,
      by problem code); a code that comes back, or a new batch given the same CJ batch id,
      opens a new row;
    - cj_monitoring_runs: every `cj-health refresh`, `build` and `check` with its exit code
      and a small JSON summary.

    This macro is the one place their DDL lives (Python never creates or alters them).
    `cj-health` writes them (cj_health/history.py, cj_health/runs.py) and prunes them by the
    retention vars (`history_retention_days`, `incident_retention_days`,
    `run_retention_days`). dbt creates them here, in an on-run-start hook, and never drops or
    rebuilds them: they are not models. They hold ids, codes, counts and times, never essay
    text. cj_health_reader may SELECT them and nothing more.
-#}

{% macro monitoring_tables() -%}
    {{ return(['cj_health_history', 'cj_batch_incidents', 'cj_monitoring_runs']) }}
{%- endmacro %}


{% macro create_monitoring_tables() -%}
    {%- set schema = adapter.quote(target.schema) -%}
    {%- set uploads = adapter.quote(cj_source_schema()) ~ '.cj_batch_uploads' -%}
create schema if not exists {{ schema }};

create table if not exists {{ schema }}.cj_health_history (
    refreshed_at timestamptz primary key,
    batch_count integer not null,
    alerting_count integer not null,
    acknowledged_count integer,
    batches_by_health_status jsonb not null,
    batches_by_problem_code jsonb not null,
    alerting_by_problem_code jsonb not null
);

create table if not exists {{ schema }}.cj_batch_incidents (
    incident_id bigint generated always as identity primary key,
    cj_batch_id integer not null,
    problem_code text not null,
    first_seen_at timestamptz not null,
    last_seen_at timestamptz not null,
    cleared_at timestamptz,
    batch_last_activity_at timestamptz,
    acknowledged_at timestamptz,
    acknowledged_by text,
    check (cleared_at is null or cleared_at >= first_seen_at)
);

{#- Added after the first release: created-if-missing tables gain them here. Open incidents
    of that time are given the BOS batch id of the batch that has their id, when it was
    created before the incident was first seen; a row left without one is cleared by the
    next refresh and its problem opens a new row. -#}
alter table {{ schema }}.cj_batch_incidents add column if not exists bos_batch_id text;
alter table {{ schema }}.cj_batch_incidents add column if not exists since timestamptz;
do $cj_bind_incidents$
begin
    if to_regclass('{{ uploads }}') is not null then
        update {{ schema }}.cj_batch_incidents as incident
        set bos_batch_id = upload.bos_batch_id
        from {{ uploads }} as upload
        where
            incident.bos_batch_id is null
            and incident.cleared_at is null
            and upload.id = incident.cj_batch_id
            and {{ cj_source_timestamp('upload.created_at') }} <= incident.first_seen_at;
    end if;
end
$cj_bind_incidents$;

create unique index if not exists cj_batch_incidents_open_key
on {{ schema }}.cj_batch_incidents (cj_batch_id, problem_code)
where cleared_at is null;

create table if not exists {{ schema }}.cj_monitoring_runs (
    run_id bigint generated always as identity primary key,
    command text not null,
    started_at timestamptz not null,
    finished_at timestamptz not null,
    exit_code integer not null,
    summary jsonb not null default '{}'::jsonb
);

create index if not exists cj_monitoring_runs_command_finished_at
on {{ schema }}.cj_monitoring_runs (command, finished_at desc);

{% for table in monitoring_tables() -%}
    grant select on {{ schema }}.{{ table }} to {{ monitoring_reader_role() }};
{% endfor -%}
{%- endmacro %}


{#- A retention var (`history_retention_days`, ...): a whole number of days, at least 1, else
    the run stops at compile time. -#}
{% macro cj_retention_days(name) %}
    {%- set value = var(name) -%}
    {%- if value is not number or value is boolean or value != value | int or value < 1 -%}
        {{ exceptions.raise_compiler_error(
            "var " ~ name ~ " must be a whole number of days, at least 1, got " ~ value) }}
    {%- endif -%}
    {{- return(value | int) -}}
{% endmacro %}
