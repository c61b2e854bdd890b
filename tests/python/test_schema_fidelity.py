"""`cj-health db init` builds production's CJ schema: compared, catalogue against catalogue,
with a database built from production's schema at head as the service's migrations define it
(tests/python/fixtures/cj_service_head.sql), which the project's migrations did not make."""

from __future__ import annotations

import hashlib

import psycopg
import pytest
from conftest import load_production_head
from psycopg import sql

from cj_health.db import Database, connect
from cj_health.errors import CjHealthError
from cj_health.schema import (
    COMMENT_ONLY_EDITS,
    LEDGER_TABLE,
    SERVICE_TABLES,
    init_schema,
    load_migrations,
)

NOT_COMPARED = ("alembic_version", LEDGER_TABLE)

COLUMNS = """
select c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
    pg_catalog.pg_get_expr(d.adbin, d.adrelid)
from pg_catalog.pg_attribute a
join pg_catalog.pg_class c on c.oid = a.attrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
where n.nspname = 'public' and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped
    and c.relname <> all(%s)
"""
CONSTRAINTS = """
select c.relname, k.conname, pg_catalog.pg_get_constraintdef(k.oid)
from pg_catalog.pg_constraint k
join pg_catalog.pg_class c on c.oid = k.conrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'public' and c.relname <> all(%s)
"""
INDEXES = """
select tablename, indexname, indexdef from pg_catalog.pg_indexes
where schemaname = 'public' and tablename <> all(%s)
"""
ENUMS = """
select t.typname, e.enumsortorder, e.enumlabel
from pg_catalog.pg_enum e join pg_catalog.pg_type t on t.oid = e.enumtypid
join pg_catalog.pg_namespace n on n.oid = t.typnamespace
where n.nspname = 'public'
"""


def catalogue(database: Database) -> dict[str, set[tuple]]:
    """Every column (type, NOT NULL, default), constraint (with its foreign-key rule), index
    and enum label (in database order) of the public schema; not column order."""
    excluded = list(NOT_COMPARED)
    with connect(database) as conn:
        enum_rows = conn.execute(ENUMS).fetchall()
        labels: dict[str, list[tuple[float, str]]] = {}
        for name, order, label in enum_rows:
            labels.setdefault(name, []).append((order, label))
        return {
            "columns": {tuple(row) for row in conn.execute(COLUMNS, (excluded,))},
            "constraints": {tuple(row) for row in conn.execute(CONSTRAINTS, (excluded,))},
            "indexes": {tuple(row) for row in conn.execute(INDEXES, (excluded,))},
            "enums": {(name, tuple(label for _, label in sorted(items)))
                      for name, items in labels.items()},
        }


def assert_same(made: dict[str, set[tuple]], production: dict[str, set[tuple]]) -> None:
    for part in ("enums", "columns", "constraints", "indexes"):
        missing = sorted(production[part] - made[part], key=str)
        extra = sorted(made[part] - production[part], key=str)
        assert not missing and not extra, (
            f"{part} differ from production: missing {missing}; not in production {extra}"
        )


@pytest.fixture
def production_catalogue(make_database) -> dict[str, set[tuple]]:
    database = make_database()
    load_production_head(database)
    return catalogue(database)


def test_db_init_builds_production_head(cj_db, production_catalogue):
    assert_same(catalogue(cj_db), production_catalogue)


def test_every_service_table_is_known(production_catalogue):
    tables = {row[0] for row in production_catalogue["columns"]}
    assert tables == set(SERVICE_TABLES)


def test_comparison_sees_drift(cj_db, production_catalogue):
    """The comparison fails on a dropped NOT NULL, a cascading foreign key and an enum label."""
    with connect(cj_db) as conn, conn.transaction():
        conn.execute("alter table cj_processed_essays alter column text_storage_id drop not null")
        conn.execute(
            "alter table grade_projections drop constraint grade_projections_cj_batch_id_fkey, "
            "add constraint grade_projections_cj_batch_id_fkey foreign key (cj_batch_id) "
            "references cj_batch_uploads (id) on delete cascade"
        )
        conn.execute("alter type cj_batch_state_enum add value 'PAUSED'")
    made = catalogue(cj_db)
    for part in ("columns", "constraints", "enums"):
        assert made[part] != production_catalogue[part], part


def test_0001_database_with_rows_and_views_upgrades_in_place(make_database,
                                                            production_catalogue):
    """A dev database made by 0001 alone, with rows and a view over the service tables, is
    brought to production's head by `db init`; its rows survive."""
    database = make_database()
    _ledger_with_0001(database, load_migrations()[0].checksum)
    with connect(database) as conn, conn.transaction():
        conn.execute(
            "insert into cj_batch_uploads (bos_batch_id, event_correlation_id, language, "
            "course_code, expected_essay_count, status) values ('b', 'c', 'en', 'ENG5', 1, "
            "'COMPLETE_FORCED_RECOVERY')"
        )
        conn.execute(
            "insert into anchor_essay_references (anchor_label, grade, grade_scale, "
            "text_storage_id, assignment_id) values ('a1', 'B', 'eng5_np_legacy_9_step', 't', "
            "'x')"
        )
        conn.execute("create schema cj_monitoring_probe")
        conn.execute(
            "create view cj_monitoring_probe.uploads as select id, status from cj_batch_uploads"
        )
    result = init_schema(database)
    assert [name.split("_")[0] for name in result.applied] == ["0002"]
    assert_same(catalogue(database), production_catalogue)
    with connect(database) as conn:
        assert conn.execute("select status::text from cj_batch_uploads").fetchone() == (
            "COMPLETE_FORCED_RECOVERY",
        )
        assert conn.execute("select count(*) from anchor_essay_references").fetchone() == (1,)
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute(sql.SQL("select * from cj_monitoring_probe.uploads"))


def _ledger_with_0001(database, checksum: str) -> None:
    first = load_migrations()[0]
    with connect(database) as conn, conn.transaction():
        conn.execute(first.sql_text)
        conn.execute(
            "create table cj_health_schema_migrations (version text primary key, name text not "
            "null, checksum text not null, applied_at timestamptz not null default now())"
        )
        conn.execute(
            "insert into cj_health_schema_migrations (version, name, checksum) "
            "values (%s, %s, %s)",
            (first.version, first.name, checksum),
        )


def test_a_comment_only_edit_keeps_databases_that_applied_the_earlier_text(make_database):
    """0001's earlier text differs from today's in its header comment only, and a database
    that applied it upgrades normally."""
    first = load_migrations()[0]
    [earlier] = COMMENT_ONLY_EDITS["0001"]
    # The earlier header cited a document outside this repository by its relative path.
    outside_document = "/".join(("..", "shared", "cj-domain.md"))
    earlier_header = (
        f"-- The CJ Assessment service schema, as production has it ({outside_document})."
    )
    body = first.sql_text.split("\n", 1)[1]
    assert hashlib.sha256(f"{earlier_header}\n{body}".encode()).hexdigest() == earlier
    database = make_database()
    _ledger_with_0001(database, earlier)
    assert [name.split("_")[0] for name in init_schema(database).applied] == ["0002"]


def test_a_changed_migration_is_refused(make_database):
    database = make_database()
    _ledger_with_0001(database, "0" * 64)
    with pytest.raises(CjHealthError, match="0001_cj_service_schema was changed after it"):
        init_schema(database)
