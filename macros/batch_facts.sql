{#- The stored per-batch facts (int_batch_facts_incremental) and the state of the refresh
    that keeps them up to date (cj_health/batch_facts.py), both created here (on-run-start),
    never dropped.

    cj_batch_facts_watermark holds one row, written by each refresh: the oldest transaction
    its snapshot could not see (`changes_after_xid`), whether the row fingerprints below
    describe that snapshot (`fingerprints_current`), what it saw of the change feed (the
    catalog signature, the loss counter, until which transaction the feed is not trusted yet)
    and why it did not use the feed (`feed_note`). No row: the next refresh rebuilds every
    batch.

    cj_source_fingerprints holds the fingerprints of the service rows
    (cj_health/source_fingerprints.py): per batch, per outbox aggregate and per shared table,
    a row count and a hash of the row versions. -#}

{% macro batch_facts_watermark_table() -%}
    {{ return('cj_batch_facts_watermark') }}
{%- endmacro %}


{% macro create_batch_facts_watermark_table() -%}
    {%- set schema = adapter.quote(target.schema) -%}
    {%- set watermark = schema ~ '.' ~ batch_facts_watermark_table() -%}
create schema if not exists {{ schema }};

create table if not exists {{ watermark }} (
    is_current boolean primary key default true check (is_current),
    changes_after_xid xid8 not null,
    recomputed_at timestamptz not null,
    rebuilt_at timestamptz not null
);

-- The delete counters of pg_stat_user_tables, and whether the feed was used, were kept here
-- before the fingerprints and the feed's signature replaced them.
alter table {{ watermark }} drop column if exists source_deletions;
alter table {{ watermark }} drop column if exists used_change_feed;
alter table {{ watermark }}
add column if not exists fingerprints_current boolean not null default false;
alter table {{ watermark }}
add column if not exists feed_signature text not null default '';
alter table {{ watermark }} add column if not exists feed_losses bigint;
alter table {{ watermark }} add column if not exists feed_pending_until xid8;
alter table {{ watermark }} add column if not exists feed_note text not null default '';

-- Keys compared byte for byte (collation "C"): ids, not words to sort for people.
create table if not exists {{ schema }}.cj_source_fingerprints (
    source text collate "C" not null,
    source_key text collate "C" not null,
    row_count bigint not null,
    row_hash bigint not null,
    primary key (source, source_key)
);
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
