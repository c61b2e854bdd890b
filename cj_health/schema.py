"""Versioned SQL migrations for the CJ service schema (`cj-health db init`).

Migrations are the files `cj_health/migrations/NNNN_name.sql`, applied in order inside ONE
transaction and recorded in the ledger table `cj_health_schema_migrations` with a checksum.
A second run applies nothing. A database that already holds the service tables but no ledger
is a real service database: nothing is created there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from cj_health.db import Database, connect, source_schema
from cj_health.errors import CjHealthError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
LEDGER_TABLE = "cj_health_schema_migrations"
SERVICE_TABLES = (
    "cj_batch_uploads",
    "cj_batch_states",
    "cj_processed_essays",
    "cj_comparison_pairs",
    "grade_projections",
    "anchor_essay_references",
    "event_outbox",
    "assessment_instructions",
)


# Checksums of earlier texts of a migration whose edits since touched comments only, so a
# database that applied the earlier text is still up to date.
COMMENT_ONLY_EDITS: dict[str, tuple[str, ...]] = {
    # 0001's header comment was reworded.
    "0001": ("15a042409914f75bd3a40bd19078b5bc3cb472c553d69316335e3b986a19e41b",),
}


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql_text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql_text.encode()).hexdigest()

    @property
    def accepted_checksums(self) -> set[str]:
        """This text's checksum and those of earlier texts that differ only in comments."""
        return {self.checksum, *COMMENT_ONLY_EDITS.get(self.version, ())}


@dataclass
class InitResult:
    applied: list[str] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)
    existing_service_schema: bool = False

    def summary(self, where: str) -> str:
        if self.existing_service_schema:
            return f"{where}: the CJ service tables already exist (no ledger); created nothing"
        if self.applied:
            return f"{where}: applied {', '.join(self.applied)}"
        count = len(self.already_applied)
        return f"{where}: schema up to date ({count} migrations); changed nothing"


def load_migrations() -> list[Migration]:
    migrations = []
    for path in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        version, _, name = path.stem.partition("_")
        migrations.append(Migration(version, name, path.read_text()))
    return migrations


def init_schema(database: Database) -> InitResult:
    """Apply pending migrations in one transaction; see the module docstring."""
    with connect(database) as conn, conn.transaction():
        return apply_migrations(conn)


def apply_migrations(conn: psycopg.Connection) -> InitResult:
    """Apply pending migrations inside the caller's open transaction."""
    schema = source_schema()
    result = InitResult()
    # One initialiser at a time per database.
    conn.execute("select pg_advisory_xact_lock(hashtext('cj_health_schema_migrations'))")
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("set local search_path to {}").format(sql.Identifier(schema)))
    has_ledger = table_exists(conn, schema, LEDGER_TABLE)
    if not has_ledger and table_exists(conn, schema, "cj_batch_uploads"):
        result.existing_service_schema = True
        return result
    conn.execute(
        sql.SQL(
            "create table if not exists {} (version text primary key, name text not null, "
            "checksum text not null, applied_at timestamptz not null default now())"
        ).format(sql.Identifier(LEDGER_TABLE))
    )
    applied = {
        row[0]: row[1]
        for row in conn.execute(
            sql.SQL("select version, checksum from {}").format(sql.Identifier(LEDGER_TABLE))
        )
    }
    for migration in load_migrations():
        if migration.version in applied:
            if applied[migration.version] not in migration.accepted_checksums:
                raise CjHealthError(
                    f"migration {migration.version}_{migration.name} was changed after it "
                    "was applied; write a new migration instead"
                )
            result.already_applied.append(migration.version)
            continue
        conn.execute(migration.sql_text)
        conn.execute(
            sql.SQL("insert into {} (version, name, checksum) values (%s, %s, %s)").format(
                sql.Identifier(LEDGER_TABLE)
            ),
            (migration.version, migration.name, migration.checksum),
        )
        result.applied.append(f"{migration.version}_{migration.name}")
    return result


def table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    row = conn.execute(
        "select 1 from information_schema.tables where table_schema = %s and table_name = %s",
        (schema, table),
    ).fetchone()
    return row is not None


def require_service_schema(conn: psycopg.Connection, database: Database) -> None:
    """Fail with one line when the connection's search_path holds no CJ service tables."""
    if conn.execute("select to_regclass('cj_batch_uploads')").fetchone()[0] is None:
        raise CjHealthError(
            f"{database.display} has no CJ service tables in schema {source_schema()} "
            "(CJ_SOURCE_SCHEMA); run `cj-health db init` first, or set it to the service's "
            "schema"
        )
