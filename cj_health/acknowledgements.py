"""Acknowledgements: problems on-call has accepted, so they stop alerting.

The table `<monitoring schema>.cj_batch_acknowledgements` belongs to the monitoring (created
by a dbt on-run-start hook, macros/acknowledgements.sql; dbt never drops it). One row accepts
one problem code of one batch (a null code: every code of the batch) until `expires_at` (null:
until `unacknowledged`). `acknowledged_by` is the database user.

- cj_batch_alerts reads the table when it is read: an acknowledgement silences at once, and
  an expired one or a removed one alerts again at once;
- cj_batch_health (a materialized view) shows `acknowledged_issues` and counts only the other
  issues in `is_alerting` from its next refresh; every write here refreshes it at once;
- the invariants (dbt tests and GX) leave out failing rows of an acknowledged problem.

A new problem code on an acknowledged batch alerts: acknowledging a batch without naming
codes records the codes it shows now, one row each, never a whole-batch row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from cj_health.db import Database, connect, monitoring_schema, source_schema
from cj_health.errors import BatchNotFound, CjHealthError
from cj_health.monitoring_tables import ACKNOWLEDGEMENTS_TABLE as TABLE
from cj_health.monitoring_tables import HEALTH_VIEW, PROBLEM_CODES_VIEW
from cj_health.text import check_input, escape

COLUMNS = (
    "acknowledgement_id, cj_batch_id, problem_code, reason, acknowledged_by,"
    " acknowledged_at, expires_at, coalesce(expires_at > now(), true) as is_active"
)


@dataclass(frozen=True)
class Acknowledgement:
    acknowledgement_id: int
    cj_batch_id: int
    problem_code: str | None
    reason: str
    acknowledged_by: str
    acknowledged_at: datetime
    expires_at: datetime | None
    is_active: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "acknowledgement_id": self.acknowledgement_id,
            "cj_batch_id": self.cj_batch_id,
            "problem_code": self.problem_code,
            "reason": self.reason,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "is_active": self.is_active,
        }

    def line(self) -> str:
        """One line for the terminal: stored text (reason, role, code) shown escaped, so a
        control character another writer stored cannot act on the reader's terminal."""
        code = self.problem_code or "every code"
        until = self.expires_at.isoformat() if self.expires_at else "unack"
        state = "" if self.is_active else " (expired)"
        return escape(
            f"CJ batch {self.cj_batch_id}: {code}{state}, by {self.acknowledged_by}"
            f" at {self.acknowledged_at.isoformat()}, until {until}: {self.reason}"
        )


def _table() -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(monitoring_schema()), sql.Identifier(TABLE))


def _health_view() -> sql.Composed:
    return sql.SQL("{}.{}").format(
        sql.Identifier(monitoring_schema()), sql.Identifier(HEALTH_VIEW)
    )


def _require_table(conn: psycopg.Connection, database: Database) -> None:
    for name in (TABLE, HEALTH_VIEW):
        found = conn.execute(
            "select to_regclass(%s)",
            (sql.Identifier(monitoring_schema(), name).as_string(conn),),
        ).fetchone()[0]
        if found is None:
            raise CjHealthError(
                f"{database.display} lacks {monitoring_schema()}.{name};"
                " run `cj-health build` first"
            )


def known_problem_codes(database: Database) -> list[str]:
    """The problem codes as dbt built them (the cj_problem_codes mart), worst first."""
    with connect(database) as conn:
        if conn.execute(
            "select to_regclass(%s)",
            (sql.Identifier(monitoring_schema(), PROBLEM_CODES_VIEW).as_string(conn),),
        ).fetchone()[0] is None:
            raise CjHealthError(
                f"{database.display} lacks {monitoring_schema()}.{PROBLEM_CODES_VIEW};"
                " run `cj-health build` first"
            )
        rows = conn.execute(
            sql.SQL("select problem_code from {} order by severity_rank").format(
                sql.Identifier(monitoring_schema(), PROBLEM_CODES_VIEW)
            )
        ).fetchall()
    return [row[0] for row in rows]


def _check_codes(database: Database, codes: list[str]) -> list[str]:
    if not codes:
        return []
    known = known_problem_codes(database)
    unknown = [code for code in codes if code not in known]
    if unknown:
        raise CjHealthError(
            f"unknown problem code {unknown[0]!r}; known codes: {', '.join(known)}"
        )
    return list(dict.fromkeys(codes))


def _check_reason(reason: str) -> str:
    """The reason, valid UTF-8 without control characters (exit 2), whitespace folded."""
    text = " ".join(check_input(str(reason or ""), "--reason", free_text=True).split())
    if not text:
        raise CjHealthError("--reason must say why the problem is accepted")
    return text


def _time(conn: psycopg.Connection, text: str, option: str) -> datetime:
    """A time the server reads as timestamptz (e.g. '2026-03-01 12:00+01', 'now + 2 days'
    is not accepted: give a time); else a one-line error."""
    check_input(text, option)
    try:
        with conn.transaction():
            return conn.execute("select %s::timestamptz", (text,)).fetchone()[0]
    except psycopg.Error:
        raise CjHealthError(
            f"{option} {escape(repr(text))} is not a time (e.g. '2026-03-01 12:00+00')"
        ) from None


def _existing_batches(conn: psycopg.Connection, batch_ids: list[int]) -> None:
    rows = conn.execute(
        sql.SQL("select id from {} where id = any(%s)").format(
            sql.Identifier(source_schema(), "cj_batch_uploads")
        ),
        (batch_ids,),
    ).fetchall()
    found = {row[0] for row in rows}
    missing = [batch for batch in batch_ids if batch not in found]
    if missing:
        raise BatchNotFound(f"no CJ batch {missing[0]}")


def _current_issues(conn: psycopg.Connection, batch_ids: list[int]) -> dict[int, list[str]]:
    """Each batch's issues not acknowledged yet, as cj_batch_health shows them."""
    rows = conn.execute(
        sql.SQL(
            "select cj_batch_id, array(select unnest(issues) except"
            " select unnest(acknowledged_issues)) from {} where cj_batch_id = any(%s)"
        ).format(_health_view()),
        (batch_ids,),
    ).fetchall()
    return {row[0]: sorted(row[1]) for row in rows}


def _insert(
    conn: psycopg.Connection,
    rows: list[tuple[int, str | None]],
    reason: str,
    until: datetime | None,
) -> list[Acknowledgement]:
    inserted = []
    for cj_batch_id, code in rows:
        row = conn.cursor(row_factory=dict_row).execute(
            sql.SQL(
                "insert into {} (cj_batch_id, problem_code, reason, expires_at)"
                " values (%s, %s, %s, %s) returning " + COLUMNS
            ).format(_table()),
            (cj_batch_id, code, reason, until),
        ).fetchone()
        inserted.append(Acknowledgement(**row))
    return inserted


def _refresh(database: Database) -> None:
    from cj_health.build import refresh

    refresh(database)


def acknowledge(
    database: Database,
    batch_ids: list[int],
    *,
    reason: str,
    codes: list[str] | None = None,
    until: str | None = None,
) -> list[Acknowledgement]:
    """Accept `codes` of each batch (default: the codes each shows now) until `until`."""
    reason = _check_reason(reason)
    codes = _check_codes(database, list(codes or []))
    if not batch_ids:
        raise CjHealthError("name at least one CJ batch id (or use --before or --list)")
    _refresh(database)
    with connect(database) as conn:
        _require_table(conn, database)
        expires = _time(conn, until, "--until") if until else None
        if expires is not None and expires <= conn.execute("select now()").fetchone()[0]:
            raise CjHealthError(f"--until {until!r} is not in the future")
        _existing_batches(conn, batch_ids)
        rows: list[tuple[int, str | None]] = []
        if codes:
            rows = [(batch, code) for batch in batch_ids for code in codes]
        else:
            current = _current_issues(conn, batch_ids)
            for batch in batch_ids:
                if not current.get(batch):
                    raise CjHealthError(
                        f"CJ batch {batch} shows no problem to acknowledge;"
                        " name one with --issue"
                    )
                rows += [(batch, code) for code in current[batch]]
        inserted = _insert(conn, rows, reason, expires)
        conn.commit()
    _refresh(database)
    return inserted


def acknowledge_before(database: Database, *, before: str, reason: str) -> list[Acknowledgement]:
    """Accept, once, every problem that batches created before `before` show now (the
    history found when the monitoring is first deployed). Each code is recorded on its own,
    so a new problem of such a batch alerts."""
    reason = _check_reason(reason)
    _refresh(database)
    with connect(database) as conn:
        _require_table(conn, database)
        cutoff = _time(conn, before, "--before")
        batches = conn.execute(
            sql.SQL(
                "select cj_batch_id from {} where created_at < %s"
                " and cardinality(issues) > cardinality(acknowledged_issues)"
                " order by cj_batch_id"
            ).format(_health_view()),
            (cutoff,),
        ).fetchall()
        current = _current_issues(conn, [row[0] for row in batches])
        rows = [(batch, code) for batch, codes in sorted(current.items()) for code in codes]
        inserted = _insert(conn, rows, reason, None)
        conn.commit()
    if inserted:
        _refresh(database)
    return inserted


def list_acknowledgements(database: Database) -> list[Acknowledgement]:
    with connect(database) as conn:
        _require_table(conn, database)
        rows = conn.cursor(row_factory=dict_row).execute(
            sql.SQL("select " + COLUMNS + " from {} order by cj_batch_id, acknowledgement_id")
            .format(_table())
        ).fetchall()
    return [Acknowledgement(**row) for row in rows]


def unacknowledge(database: Database, cj_batch_id: int, *, code: str | None = None) -> int:
    """Remove the batch's acknowledgements (of `code` only, when given); the problems alert
    again at once. Returns how many were removed."""
    if code is not None:
        _check_codes(database, [code])
    with connect(database) as conn:
        _require_table(conn, database)
        _existing_batches(conn, [cj_batch_id])
        statement = sql.SQL("delete from {} where cj_batch_id = %s").format(_table())
        params: tuple[object, ...] = (cj_batch_id,)
        if code is not None:
            statement += sql.SQL(" and problem_code = %s")
            params += (code,)
        removed = conn.execute(statement, params).rowcount
        if removed == 0:
            what = f" of {code}" if code else ""
            raise CjHealthError(f"CJ batch {cj_batch_id} has no acknowledgement{what}")
        conn.commit()
    _refresh(database)
    return removed


def accepted_batches(database: Database) -> dict[int, list[str]]:
    """Batches whose problems are acknowledged (as of the health view's last refresh): what
    `build` and `check` report as accepted beside their verdict."""
    with connect(database) as conn:
        if conn.execute(
            "select to_regclass(%s)",
            (sql.Identifier(monitoring_schema(), HEALTH_VIEW).as_string(conn),),
        ).fetchone()[0] is None:
            return {}
        rows = conn.execute(
            sql.SQL(
                "select cj_batch_id, acknowledged_issues from {}"
                " where cardinality(acknowledged_issues) > 0 order by cj_batch_id"
            ).format(_health_view())
        ).fetchall()
    return {row[0]: list(row[1]) for row in rows}


def accepted_line(accepted: dict[int, list[str]]) -> str | None:
    if not accepted:
        return None
    shown = escape(
        "; ".join(f"{batch} {','.join(codes)}" for batch, codes in list(accepted.items())[:8])
    )
    more = f" (+{len(accepted) - 8} more)" if len(accepted) > 8 else ""
    return (
        f"accepted (acknowledged, not failing): {len(accepted)} batches: {shown}{more};"
        " `cj-health ack --list`"
    )


def to_json(acknowledgements: list[Acknowledgement]) -> str:
    return json.dumps([ack.as_dict() for ack in acknowledgements], indent=2, sort_keys=True)
