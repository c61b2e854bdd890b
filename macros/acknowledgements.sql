{#-
    The acknowledgement table, owned by the monitoring (not a dbt model: dbt never drops or
    rebuilds it, so acknowledgements survive every `cj-health build`). `cj-health ack`
    writes it; the health view, the alert view and the invariants read it through
    stg_cj_monitoring__batch_acknowledgements. Grafana's reader may read it, never write it.

    - problem_code null: every problem code of the batch is accepted;
    - expires_at null: the acknowledgement holds until `cj-health unack`;
    - acknowledged_by: the database user who acknowledged.
-#}

{% macro create_acknowledgements_table() -%}
{%- set schema = adapter.quote(target.schema) -%}
create schema if not exists {{ schema }};
create table if not exists {{ schema }}.cj_batch_acknowledgements (
    acknowledgement_id bigint generated always as identity primary key,
    cj_batch_id integer not null,
    problem_code text,
    reason text not null check (btrim(reason) <> ''),
    acknowledged_by text not null default current_user,
    acknowledged_at timestamptz not null default now(),
    expires_at timestamptz
);
create index if not exists cj_batch_acknowledgements_batch_idx
    on {{ schema }}.cj_batch_acknowledgements (cj_batch_id);
revoke all on {{ schema }}.cj_batch_acknowledgements from {{ monitoring_reader_role() }};
grant select on {{ schema }}.cj_batch_acknowledgements to {{ monitoring_reader_role() }}
{%- endmacro %}
