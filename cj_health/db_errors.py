"""Database errors as the one line an operator reads, whatever command met them.

Every psycopg error a command does not handle itself ends in cj_health.cli as
`describe(exc)` (exit 2); dbt's and Great Expectations' failures pass their text through
`privilege_line`. The line names:
- a missing privilege: PostgreSQL's own words (the relation, schema or database), the role,
  and the privilege the failing statement needed (SELECT, INSERT, USAGE on a schema, ...),
  read from that statement, which cj_health.db's cursors leave on the error;
- a missing relation: `cj-health db init` for a CJ service table, `cj-health build` for the
  monitoring's own;
- a lock timeout: that another session held a lock the command needed, who holds locks in the
  monitoring schema now, and to retry.
`refresh_failure` gives the refresh's hint by the same causes. PostgreSQL's messages carry no
password, and a URL is never quoted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg

from cj_health.errors import CjHealthError

PRIVILEGES_DOC = 'docs/runbook.md, "Privileges"'
# PostgreSQL's words for a missing privilege and for a statement only the owner may run.
_KINDS = (
    r"(?P<kind>materialized view|foreign table|table|view|sequence|schema|database|function"
    r"|procedure|routine|type|column|index|relation)"
)
_NAME = r"(?P<name>\"[^\"]+\"|[^\s:;,]+)"
_DENIED = re.compile(rf"permission denied for {_KINDS} {_NAME}")
_OWNER = re.compile(rf"must be owner of {_KINDS} {_NAME}")
# A write statement and the relation it writes: `insert into x`, `update x`, `delete from x`.
_WRITE_TARGET = re.compile(
    r"^\s*(?:with\b.*?\)\s*)?(?P<verb>insert\s+into|update|delete\s+from|truncate(?:\s+table)?"
    r"|merge\s+into)\s+(?:only\s+)?(?P<target>[\w\".]+)",
    re.IGNORECASE | re.DOTALL,
)
_MISSING_RELATION = re.compile(r'relation "(?P<name>[^"]+)" does not exist')
STATEMENT_CHARS = 400  # how much of a failing statement is kept on its error


@dataclass(frozen=True)
class StatementContext:
    """What cj_health.db's cursor leaves on a database error: the failing statement's start,
    the role and where the connection was."""

    statement: str
    role: str
    where: str


def remember_statement(exc: psycopg.Error, query: object, conn: psycopg.Connection) -> None:
    """Leave the failing statement, the role and the server on `exc` (see StatementContext)."""
    try:
        text = query.as_string(conn) if hasattr(query, "as_string") else query
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        info = conn.info
        where = f"{info.host}:{info.port}/{info.dbname}"
        exc.cj_context = StatementContext(str(text)[:STATEMENT_CHARS], info.user, where)
    except Exception:  # the error itself matters more than its context
        return


def _context(exc: BaseException) -> StatementContext | None:
    return getattr(exc, "cj_context", None)


def _unquote(name: str) -> str:
    return name[1:-1] if name.startswith('"') and name.endswith('"') else name


def needed_privilege(kind: str, name: str, statement: str | None = None) -> str:
    """The privilege a statement needed on the object PostgreSQL named (`kind` `name`); with
    the statement unknown (None: dbt's, python_fix's), the likely one, said as such."""
    if statement is None:
        unknown = {"schema": "USAGE (CREATE to create in it)", "database": "CREATE"}
        return unknown.get(kind) or (
            "EXECUTE" if kind in ("function", "procedure", "routine")
            else "SELECT (or the write its statement made)"
        )
    words = statement.lstrip().lower()
    if kind == "schema":
        return "CREATE" if words.startswith("create") else "USAGE"
    if kind == "database":
        if words.startswith("create temp"):
            return "TEMPORARY"
        return "CREATE" if words.startswith("create") or not words else "CONNECT"
    if kind in ("function", "procedure", "routine"):
        return "EXECUTE"
    if kind == "type":
        return "USAGE"
    if words.startswith("lock"):
        return "UPDATE, DELETE or TRUNCATE (to lock it)"
    write = _WRITE_TARGET.match(statement)
    if write:
        target = _unquote(write.group("target").split(".")[-1])
        if target == _unquote(name).split(".")[-1]:
            return write.group("verb").split()[0].upper()
    return "SELECT"


def privilege_line(
    message: str, role: str | None = None, statement: str | None = None, where: str = ""
) -> str | None:
    """One line for a privilege error found in `message` (PostgreSQL's, or dbt's or GX's text
    quoting it) on the database `where`; None when the message is about something else."""
    role_text = f"role {role}" if role else "the role"
    on = f" on {where}" if where else ""
    denied = _DENIED.search(message)
    if denied:
        kind, name = denied.group("kind"), denied.group("name")
        privilege = needed_privilege(kind, name, statement)
        return (
            f"permission denied for {kind} {name}{on}: {role_text} needs {privilege} on it;"
            f" grant it, or run as a role that has it ({PRIVILEGES_DOC})"
        )
    owner = _OWNER.search(message)
    if owner:
        kind, name = owner.group("kind"), owner.group("name")
        return (
            f"must be owner of {kind} {name}{on}: {role_text} does not own it; run as its"
            f" owner, the role that built the monitoring ({PRIVILEGES_DOC})"
        )
    return None


def _primary(exc: psycopg.Error) -> str:
    primary = exc.diag.message_primary if exc.diag else None
    if primary:
        return primary
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def is_lock_timeout(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.errors.LockNotAvailable) or (
        isinstance(exc, psycopg.errors.QueryCanceled) and "lock timeout" in str(exc)
    )


def describe(exc: psycopg.Error) -> str:
    """The one line for a database error no command handled itself (cj_health.cli)."""
    context = _context(exc)
    primary = _primary(exc)
    where = f" on {context.where}" if context else ""
    if isinstance(exc, psycopg.errors.InsufficientPrivilege) or "permission denied" in primary:
        role = context.role if context else None
        line = privilege_line(
            primary, role, context.statement if context else None, context.where if context else ""
        )
        if line is None:  # e.g. "permission denied to create role"
            line = f"{primary}{where} (role {role or 'of the connection'}; {PRIVILEGES_DOC})"
        return line
    missing = _MISSING_RELATION.search(primary)
    if isinstance(exc, psycopg.errors.UndefinedTable) and missing:
        return f"{primary}{where}; {missing_relation_hint(missing.group('name'))}"
    if is_lock_timeout(exc):
        return (
            f"{primary}{where}: another session held a lock this command needed; nothing was"
            " changed, retry"
        )
    if isinstance(exc, psycopg.OperationalError):
        # The server went away mid-command (stopped, restarted, network). Every write is one
        # transaction, so what was not committed is rolled back.
        return f"lost the database connection: {primary}"
    return f"database error{where}: {primary}"


def missing_relation_hint(name: str) -> str:
    """What to run when relation `name` does not exist: the service schema or the monitoring."""
    from cj_health.schema import SERVICE_TABLES

    if name.split(".")[-1] in SERVICE_TABLES:
        return (
            "run `cj-health db init` first on a dev database, or set CJ_SOURCE_SCHEMA to the"
            " service's schema"
        )
    return "run `cj-health build` first"


def refresh_failure(exc: psycopg.Error, conn: psycopg.Connection, what: str) -> CjHealthError:
    """The refresh of `what` failed with `exc` (its transaction rolled back): the cause and the
    hint that follows it. A missing privilege names the grant; a lock timeout says to retry and
    who holds locks in the monitoring schema; a missing relation or column says to build."""
    primary = _primary(exc)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return CjHealthError(
            f"refreshing {what} failed: {describe(exc)}; nothing was changed (a refresh runs as"
            " the role that owns the monitoring's relations)"
        )
    if is_lock_timeout(exc):
        holders = lock_holders(conn)
        held = f"; locks there are held by {holders}" if holders else ""
        return CjHealthError(
            f"refreshing {what} failed: {primary}: another session held a lock it needed"
            f"{held}; nothing was changed, retry (a scheduled refresh retries next minute)"
        )
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return CjHealthError(
            f"refreshing {what} failed: {primary}; nothing was changed (a statement_timeout"
            " of the role or database ended it: raise it for the refresh's role)"
        )
    if isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected):
        return CjHealthError(f"refreshing {what} failed: {primary}; nothing was changed, retry")
    undefined = (
        psycopg.errors.UndefinedTable,
        psycopg.errors.UndefinedColumn,
        psycopg.errors.UndefinedFunction,
        psycopg.errors.UndefinedObject,
        psycopg.errors.InvalidSchemaName,
        psycopg.errors.DatatypeMismatch,
    )
    if isinstance(exc, undefined):
        missing = _MISSING_RELATION.search(primary)
        hint = (
            missing_relation_hint(missing.group("name"))
            if missing
            else "the monitoring's models differ from this version: run `cj-health build`"
        )
        return CjHealthError(f"refreshing {what} failed: {primary}; {hint}")
    return CjHealthError(
        f"refreshing {what} failed: {primary}; nothing was changed (see the server's log;"
        " `cj-health build` rebuilds the monitoring if its relations are damaged)"
    )


def lock_holders(conn: psycopg.Connection) -> str:
    """Other sessions holding locks stronger than a reader's on relations of the monitoring
    schema, e.g. `pid 4711 (role etl, idle in transaction)`; empty when none is found now."""
    from cj_health.db import monitoring_schema

    try:
        rows = conn.execute(
            "select distinct activity.pid, activity.usename, activity.state"
            " from pg_catalog.pg_locks as locks"
            " inner join pg_catalog.pg_class as class on class.oid = locks.relation"
            " inner join pg_catalog.pg_namespace as namespace"
            "   on namespace.oid = class.relnamespace"
            " inner join pg_catalog.pg_stat_activity as activity on activity.pid = locks.pid"
            " where locks.granted and locks.mode <> 'AccessShareLock'"
            "   and locks.pid <> pg_backend_pid() and namespace.nspname = %s"
            " order by activity.pid limit 3",
            (monitoring_schema(),),
        ).fetchall()
    except psycopg.Error:
        return ""
    return ", ".join(f"pid {pid} (role {role}, {state or 'state unknown'})"
                     for pid, role, state in rows)
