"""Acknowledgements: problems on-call has accepted, so they stop alerting.

The table `<monitoring schema>.cj_batch_acknowledgements` belongs to the monitoring; its DDL
lives in one place, the dbt on-run-start hook in macros/acknowledgements.sql (created when
missing, never dropped, columns added there). One row accepts one problem code of one batch
(a null code: every code of the batch) until `expires_at` (null: until `unack`).
`acknowledged_by` is who acknowledged (`--by`, default the login name, else the database
user).

An acknowledgement belongs to its batch's identity, not to a number: it stores the batch's
`bos_batch_id` and holds only while the batch with that CJ batch id still has it, so a batch
that a reseed gives the same id does not inherit it (and `eng5 reset` removes them all).

This module applies no rule of its own. Whether an acknowledgement holds is
int_acknowledgements_joined_to_batches.is_active; which problems it accepts is the macro
acknowledgement_accepts, which the models use:

- cj_batch_alerts and cj_batch_issues read the acknowledgements live: `ack` silences at
  once, an expired or removed one alerts again at once;
- cj_batch_health (a materialized view) shows `acknowledged_issues` and counts only the other
  issues in `is_alerting` from its next refresh; every write here refreshes it at once (which
  also brings the incidents' acknowledged_by/at up to date, cj_health.history);
- the invariants (dbt tests and GX) leave out failing rows of an acknowledged problem.

A new problem code on an acknowledged batch alerts: acknowledging a batch without naming
codes records the codes it shows now (cj_batch_issues), one row each, never a whole-batch row.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from cj_health.db import Database, connect, source_schema
from cj_health.durations import EXAMPLES, parse_duration
from cj_health.errors import BatchNotFound, CjHealthError
from cj_health.monitoring_tables import (
    ACKNOWLEDGEMENTS_MODEL,
    ACKNOWLEDGEMENTS_TABLE,
    HEALTH_VIEW,
    ISSUES_VIEW,
    PROBLEM_CODES_VIEW,
    qualified,
    relation_exists,
    require_relations,
)
from cj_health.text import check_input, escape

# The columns of int_acknowledgements_joined_to_batches that `ack --list` shows.
COLUMNS = (
    "acknowledgement_id",
    "cj_batch_id",
    "bos_batch_id",
    "problem_code",
    "reason",
    "acknowledged_by",
    "acknowledged_at",
    "expires_at",
    "is_expired",
    "is_current_batch",
    "is_active",
)

# What acknowledging, listing and clearing read: the table, the one definition of an
# acknowledgement in force, and the issues it accepts.
ACKNOWLEDGED_ISSUES_RELATIONS = (ACKNOWLEDGEMENTS_TABLE, ACKNOWLEDGEMENTS_MODEL, ISSUES_VIEW)


@dataclass(frozen=True)
class Acknowledgement:
    acknowledgement_id: int
    cj_batch_id: int
    bos_batch_id: str | None
    problem_code: str | None
    reason: str
    acknowledged_by: str
    acknowledged_at: datetime
    expires_at: datetime | None
    is_expired: bool
    is_current_batch: bool
    is_active: bool

    def as_dict(self) -> dict[str, Any]:
        """Ids, codes, times, reason and who: no essay text."""
        return {
            "acknowledgement_id": self.acknowledgement_id,
            "cj_batch_id": self.cj_batch_id,
            "bos_batch_id": self.bos_batch_id,
            "problem_code": self.problem_code,
            "reason": self.reason,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "is_expired": self.is_expired,
            "is_current_batch": self.is_current_batch,
            "is_active": self.is_active,
        }

    def line(self) -> str:
        """One line for the terminal: stored text (reason, name, code) shown escaped, so a
        control character another writer stored cannot act on the reader's terminal."""
        code = self.problem_code or "every code"
        until = self.expires_at.isoformat() if self.expires_at else "unack"
        state = ""
        if self.is_expired:
            state = " (expired)"
        elif not self.is_current_batch:
            state = " (not held: the batch with this id is not the one acknowledged)"
        return escape(
            f"CJ batch {self.cj_batch_id}: {code}{state}, by {self.acknowledged_by}"
            f" at {self.acknowledged_at.isoformat()}, until {until}: {self.reason}"
        )


def default_acknowledger() -> str | None:
    """Who acknowledges when `--by` is not given: the login name ($LOGNAME, $USER, the
    password database); None when there is none, and the database user is stored."""
    try:
        name = getpass.getuser().strip()
    except (OSError, KeyError):
        return None
    return name or None


def known_problem_codes(database: Database) -> list[str]:
    """The problem codes as dbt built them (the cj_problem_codes mart), worst first."""
    with connect(database) as conn:
        require_relations(conn, database, PROBLEM_CODES_VIEW)
        rows = conn.execute(
            sql.SQL("select problem_code from {} order by severity_rank").format(
                qualified(PROBLEM_CODES_VIEW)
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


def _check_by(by: str | None) -> str | None:
    if by is None:
        return default_acknowledger()
    text = check_input(by, "--by").strip()
    if not text:
        raise CjHealthError("--by must name who acknowledges")
    return text


def _time(conn: psycopg.Connection, text: str, option: str) -> datetime:
    """A time the server reads as timestamptz ('2026-03-01 12:00+01'); else one line."""
    check_input(text, option)
    try:
        with conn.transaction():
            return conn.execute("select %s::timestamptz", (text,)).fetchone()[0]
    except psycopg.Error:
        raise CjHealthError(
            f"{option} {escape(repr(text))} is neither a duration ({EXAMPLES}) nor a time"
            " (e.g. '2026-03-01 12:00+00')"
        ) from None


def resolve_until(conn: psycopg.Connection, text: str) -> datetime:
    """`--until`: a duration from now (`8h`, `+8 hours`) or a time, in the future."""
    check_input(text, "--until")
    duration = parse_duration(text)
    if duration is not None:
        expires = conn.execute("select now() + %s", (duration,)).fetchone()[0]
    else:
        expires = _time(conn, text, "--until")
    if expires <= conn.execute("select now()").fetchone()[0]:
        raise CjHealthError(f"--until {escape(repr(text))} is not in the future")
    return expires


def _batch_identities(conn: psycopg.Connection, batch_ids: list[int]) -> dict[int, str]:
    """Each batch's bos_batch_id (what an acknowledgement is bound to); BatchNotFound
    (exit 4) for the first id with no batch."""
    rows = conn.execute(
        sql.SQL("select id, bos_batch_id from {} where id = any(%s)").format(
            sql.Identifier(source_schema(), "cj_batch_uploads")
        ),
        (batch_ids,),
    ).fetchall()
    found = {row[0]: row[1] for row in rows}
    missing = [batch for batch in batch_ids if batch not in found]
    if missing:
        raise BatchNotFound(f"no CJ batch {missing[0]}")
    return found


def _unacknowledged_issues(
    conn: psycopg.Connection, batch_ids: list[int]
) -> dict[int, list[str]]:
    """Each batch's problem codes that no acknowledgement accepts yet (cj_batch_issues)."""
    rows = conn.execute(
        sql.SQL(
            "select cj_batch_id, problem_code from {} where cj_batch_id = any(%s)"
            " and not is_acknowledged order by cj_batch_id, severity_rank"
        ).format(qualified(ISSUES_VIEW)),
        (batch_ids,),
    ).fetchall()
    issues: dict[int, list[str]] = {}
    for batch, code in rows:
        issues.setdefault(batch, []).append(code)
    return issues


def _read(conn: psycopg.Connection, ids: list[int] | None = None) -> list[Acknowledgement]:
    query = sql.SQL("select {} from {}").format(
        sql.SQL(", ").join(sql.Identifier(column) for column in COLUMNS),
        qualified(ACKNOWLEDGEMENTS_MODEL),
    )
    params: tuple[object, ...] = ()
    if ids is not None:
        query += sql.SQL(" where acknowledgement_id = any(%s)")
        params = (ids,)
    query += sql.SQL(" order by cj_batch_id, acknowledgement_id")
    rows = conn.cursor(row_factory=dict_row).execute(query, params).fetchall()
    return [Acknowledgement(**row) for row in rows]


def _insert(
    conn: psycopg.Connection,
    rows: list[tuple[int, str | None]],
    identities: dict[int, str],
    reason: str,
    until: datetime | None,
    by: str | None,
) -> list[Acknowledgement]:
    ids = []
    for cj_batch_id, code in rows:
        ids.append(
            conn.execute(
                sql.SQL(
                    "insert into {} (cj_batch_id, bos_batch_id, problem_code, reason,"
                    " expires_at, acknowledged_by) values (%s, %s, %s, %s, %s,"
                    " coalesce(%s, current_user)) returning acknowledgement_id"
                ).format(qualified(ACKNOWLEDGEMENTS_TABLE)),
                (cj_batch_id, identities[cj_batch_id], code, reason, until, by),
            ).fetchone()[0]
        )
    return _read(conn, ids) if ids else []


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
    by: str | None = None,
) -> list[Acknowledgement]:
    """Accept `codes` of each batch (default: the codes each shows now) until `until` (a
    duration such as `8h` or a time), in the name of `by` (default the login name)."""
    reason = _check_reason(reason)
    by = _check_by(by)
    codes = _check_codes(database, list(codes or []))
    if not batch_ids:
        raise CjHealthError("name at least one CJ batch id (or use --before or --list)")
    _refresh(database)
    with connect(database) as conn:
        require_relations(conn, database, *ACKNOWLEDGED_ISSUES_RELATIONS)
        expires = resolve_until(conn, until) if until else None
        # The identity is read in the transaction that writes: each row is bound to the
        # batch that has the id now.
        identities = _batch_identities(conn, batch_ids)
        rows: list[tuple[int, str | None]] = []
        if codes:
            rows = [(batch, code) for batch in batch_ids for code in codes]
        else:
            current = _unacknowledged_issues(conn, batch_ids)
            for batch in batch_ids:
                if not current.get(batch):
                    raise CjHealthError(
                        f"CJ batch {batch} shows no problem to acknowledge;"
                        " name one with --issue"
                    )
                rows += [(batch, code) for code in current[batch]]
        inserted = _insert(conn, rows, identities, reason, expires, by)
        conn.commit()
    _refresh(database)
    return _reread(database, inserted)


def acknowledge_before(
    database: Database, *, before: str, reason: str, by: str | None = None
) -> list[Acknowledgement]:
    """Accept, once, every problem that batches created before `before` show now (the
    history found when the monitoring is first deployed). Each code is recorded on its own,
    so a new problem of such a batch alerts."""
    reason = _check_reason(reason)
    by = _check_by(by)
    _refresh(database)
    with connect(database) as conn:
        require_relations(conn, database, *ACKNOWLEDGED_ISSUES_RELATIONS)
        cutoff = _time(conn, before, "--before")
        batches = [
            row[0]
            for row in conn.execute(
                sql.SQL(
                    "select distinct cj_batch_id from {} where created_at < %s"
                    " and not is_acknowledged order by cj_batch_id"
                ).format(qualified(ISSUES_VIEW)),
                (cutoff,),
            ).fetchall()
        ]
        current = _unacknowledged_issues(conn, batches)
        rows = [(batch, code) for batch, codes in sorted(current.items()) for code in codes]
        identities = _batch_identities(conn, batches) if batches else {}
        inserted = _insert(conn, rows, identities, reason, None, by)
        conn.commit()
    if inserted:
        _refresh(database)
    return inserted


def _reread(database: Database, acknowledgements: list[Acknowledgement]) -> list[Acknowledgement]:
    with connect(database) as conn:
        return _read(conn, [ack.acknowledgement_id for ack in acknowledgements])


def list_acknowledgements(database: Database) -> list[Acknowledgement]:
    with connect(database) as conn:
        require_relations(conn, database, ACKNOWLEDGEMENTS_TABLE, ACKNOWLEDGEMENTS_MODEL)
        return _read(conn)


def unacknowledge(database: Database, cj_batch_id: int, *, code: str | None = None) -> int:
    """Remove the batch's acknowledgements (of `code` only, when given); the problems alert
    again at once, and the refresh that follows clears acknowledged_by/at on the batch's open
    incidents (so `status` and `incidents` no longer show them). Returns how many were
    removed."""
    if code is not None:
        _check_codes(database, [code])
    with connect(database) as conn:
        require_relations(conn, database, ACKNOWLEDGEMENTS_TABLE)
        statement = sql.SQL("delete from {} where cj_batch_id = %s").format(
            qualified(ACKNOWLEDGEMENTS_TABLE)
        )
        params: tuple[object, ...] = (cj_batch_id,)
        if code is not None:
            statement += sql.SQL(" and problem_code = %s")
            params += (code,)
        removed = conn.execute(statement, params).rowcount
        _batch_identities(conn, [cj_batch_id])  # exit 4 for no such batch; nothing committed
        if removed == 0:
            what = f" of {code}" if code else ""
            raise CjHealthError(f"CJ batch {cj_batch_id} has no acknowledgement{what}")
        conn.commit()
    _refresh(database)
    return removed


def forget_all(conn: psycopg.Connection) -> int:
    """Remove every acknowledgement, in the caller's transaction: what a reset that reuses
    CJ batch ids (`eng5 reset`, the demo) does, since the batches they were for are gone.
    Returns how many were removed (0 when the table does not exist yet)."""
    if not relation_exists(conn, ACKNOWLEDGEMENTS_TABLE):
        return 0
    return conn.execute(
        sql.SQL("delete from {}").format(qualified(ACKNOWLEDGEMENTS_TABLE))
    ).rowcount


def accepted_batches(database: Database) -> dict[int, list[str]]:
    """Batches whose problems are acknowledged (as of the health view's last refresh): what
    `build` and `check` report as accepted beside their verdict."""
    with connect(database) as conn:
        if not relation_exists(conn, HEALTH_VIEW):
            return {}
        rows = conn.execute(
            sql.SQL(
                "select cj_batch_id, acknowledged_issues from {}"
                " where cardinality(acknowledged_issues) > 0 order by cj_batch_id"
            ).format(qualified(HEALTH_VIEW))
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
