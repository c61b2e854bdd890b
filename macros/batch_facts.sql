{#- The stored per-batch facts (int_batch_facts_incremental) and the watermark of the refresh
    that keeps them up to date (cj_health/batch_facts.py).

    cj_batch_facts_watermark holds one row: the oldest transaction id the last refresh could
    not see (`changes_after_xid`, a snapshot's xmin): a service row whose xmin is at least
    this one was inserted or updated since, and its batch is recomputed. Deletes leave no
    row behind, so the row also keeps the service tables' delete counters
    (`source_deletions`, from pg_stat_user_tables); when they move, the refresh rebuilds
    every batch. No row: the next refresh rebuilds every batch. Created here (on-run-start),
    never dropped. -#}

{% macro batch_facts_watermark_table() -%}
    {{ return('cj_batch_facts_watermark') }}
{%- endmacro %}


{% macro create_batch_facts_watermark_table() -%}
    {%- set schema = adapter.quote(target.schema) -%}
create schema if not exists {{ schema }};

create table if not exists {{ schema }}.{{ batch_facts_watermark_table() }} (
    is_current boolean primary key default true check (is_current),
    changes_after_xid xid8 not null,
    source_deletions jsonb not null,
    recomputed_at timestamptz not null,
    rebuilt_at timestamptz not null
);

-- Whether the refresh that wrote the row took the change feed with every trigger in place
-- (cj_health/change_feed.py): only then can the next refresh trust the feed alone.
alter table {{ schema }}.{{ batch_facts_watermark_table() }}
add column if not exists used_change_feed boolean not null default false;
{%- endmacro %}


{#- Pre-hook of int_batch_facts_incremental: one writer of the stored facts at a time (a
    `dbt run` and a `cj-health refresh` take the same lock). -#}
{% macro cj_lock_batch_facts() -%}
    lock table {{ adapter.quote(target.schema) }}.{{ batch_facts_watermark_table() }}
    in share row exclusive mode
{%- endmacro %}


{% macro cj_reset_batch_facts_watermark() -%}
    delete from {{ adapter.quote(target.schema) }}.{{ batch_facts_watermark_table() }}
{%- endmacro %}
