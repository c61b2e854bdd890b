{#-
    The acknowledgement table, owned by the monitoring (not a dbt model: dbt never drops or
    rebuilds it, so acknowledgements survive every `cj-health build`). This macro is the one
    place its DDL lives. `cj-health ack` writes it; the health view, the alert view and the
    invariants read it through int_acknowledgements_joined_to_batches. Grafana's reader may
    read it, never write it.

    - cj_batch_id and bos_batch_id: the batch it belongs to. The CJ batch id alone is a
      number that a reseed (`truncate ... restart identity`) hands to a new batch; an
      acknowledgement holds only while the batch with that id still has the BOS batch id it
      was given for (int_acknowledgements_joined_to_batches.is_active);
    - problem_code null: every problem code of the batch is accepted;
    - expires_at null: the acknowledgement holds until `cj-health unack`;
    - acknowledged_by: who acknowledged (`cj-health ack --by`, default the login name; the
      database user when none is given).

    Migration: tables created before bos_batch_id existed get the column (nullable: rows
    cannot be given one by default). Each such row is bound to the batch that has its id now
    only when that batch was created before the acknowledgement was written (so it is the
    batch the acknowledgement was for); any other row stays unbound and holds for no batch,
    so its problems alert again until acknowledged anew. Every `cj-health build` repeats this
    (a no-op once bound).
-#}

{% macro create_acknowledgements_table() -%}
{%- set schema = adapter.quote(target.schema) -%}
{%- set uploads = adapter.quote(cj_source_schema()) ~ '.cj_batch_uploads' -%}
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
alter table {{ schema }}.cj_batch_acknowledgements
    add column if not exists bos_batch_id text;
create index if not exists cj_batch_acknowledgements_batch_idx
    on {{ schema }}.cj_batch_acknowledgements (cj_batch_id);
do $cj_bind_acknowledgements$
begin
    if to_regclass('{{ uploads }}') is not null then
        update {{ schema }}.cj_batch_acknowledgements as acknowledgement
        set bos_batch_id = upload.bos_batch_id
        from {{ uploads }} as upload
        where
            acknowledgement.bos_batch_id is null
            and upload.id = acknowledgement.cj_batch_id
            and {{ cj_source_timestamp('upload.created_at') }}
            <= acknowledgement.acknowledged_at;
    end if;
end
$cj_bind_acknowledgements$;
revoke all on {{ schema }}.cj_batch_acknowledgements from {{ monitoring_reader_role() }};
grant select on {{ schema }}.cj_batch_acknowledgements to {{ monitoring_reader_role() }}
{%- endmacro %}
