{#-
    The monitoring's own tables, kept over time in the target schema (default cj_monitoring):

    - cj_health_history: one point per refresh of cj_batch_health (counts per health_status
      and per problem code, alerting and acknowledged counts);
    - cj_batch_incidents: one row per batch and problem code from the refresh it was first
      seen to the refresh it was gone (cleared_at); a code that comes back opens a new row;
    - cj_monitoring_runs: every `cj-health refresh`, `build` and `check` with its exit code
      and a small JSON summary.

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
