"""Run the GX checkpoint against a database and summarise each rule's result.

GX is imported here only (slow to import; the CLI must not load it at start). Its progress
bars and log chatter are silenced, and anything it prints is swallowed: the caller prints
the summary. Expected failures become one-line CjHealthErrors (exit 2) that name what is
missing; a password never reaches a message.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql

from cj_health.db import Database, connect, monitoring_schema
from cj_health.db_errors import privilege_line
from cj_health.errors import CjHealthError
from cj_health.gx import context as gx_context
from cj_health.gx.connection import CONNECTION_VARIABLE, sqlalchemy_url

MAX_LISTED_BATCHES = 1000


@dataclass
class RuleResult:
    rule: str
    suite: str
    success: bool
    description: str
    failing_batches: list[int] = field(default_factory=list)
    failing_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "suite": self.suite,
            "success": self.success,
            "failing_batches": self.failing_batches,
            "failing_rows": self.failing_rows,
            "description": self.description,
        }


@dataclass
class CheckpointOutcome:
    success: bool
    rules: list[RuleResult]
    data_docs_index: Path


def quiet_gx() -> None:
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    for name in ("great_expectations", "sqlalchemy", "tqdm"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="great_expectations")
    warnings.filterwarnings("ignore", module="pydantic")


def redact(message: str, database: Database, *, first_line_only: bool = True) -> str:
    """One line of `message`, without the database password or any URL's password."""
    if first_line_only:
        line = (message.strip().splitlines() or ["unknown error"])[0]
    else:  # e.g. pydantic's "1 validation error for X / field / what is missing"
        line = " ".join(message.split())[:400] or "unknown error"
    password = database.params.get("password")
    if password:
        line = line.replace(password, "***")
    return re.sub(r"(postgresql(\+\w+)?://[^:/@\s]*):[^@\s]*@", r"\1:***@", line)


def require_relations(database: Database, assets: list[str]) -> None:
    """Fail with one line naming the missing relation when a data asset does not exist."""
    schema = monitoring_schema()
    with connect(database) as conn:
        missing = [
            asset
            for asset in assets
            if conn.execute(
                "select to_regclass(%s)",
                (sql.Identifier(schema, asset).as_string(conn),),
            ).fetchone()[0]
            is None
        ]
    if missing:
        names = ", ".join(f"{schema}.{name}" for name in missing)
        raise CjHealthError(
            f"{database.display} lacks {names}: the dbt models are not built there; "
            "run `cj-health build` first"
        )


def run_checkpoint(database: Database, root: Path) -> CheckpointOutcome:
    """Run the `cj_health` checkpoint of the context in `root` (updates its Data Docs)."""
    quiet_gx()
    os.environ[CONNECTION_VARIABLE] = sqlalchemy_url(database)
    swallowed = io.StringIO()
    try:
        with contextlib.redirect_stdout(swallowed), contextlib.redirect_stderr(swallowed):
            import great_expectations as gx

            context = gx.get_context(mode="file", context_root_dir=str(root))
            checkpoint = context.checkpoints.get(gx_context.CHECKPOINT)
            result = checkpoint.run()
    except Exception as exc:  # GX wraps every failure in its own types: report one line
        _raise_if_denied(str(exc), database)
        raise CjHealthError(
            f"the GX checkpoint could not run: {type(exc).__name__}: "
            f"{redact(str(exc), database, first_line_only=False)}"
        ) from None
    finally:
        os.environ.pop(CONNECTION_VARIABLE, None)
    rules: list[RuleResult] = []
    broken: list[str] = []
    for validation in result.run_results.values():
        suite = validation.suite_name
        for outcome in validation.results:
            failure = _exception_message(outcome.exception_info)
            if failure is None:
                rules.append(_rule_result(outcome, suite))
            else:
                rule = (outcome.expectation_config.meta or {}).get("rule")
                cause = _cause(redact(failure, database))
                broken.append(f"rule {rule or outcome.expectation_config.type} "
                              f"(suite {suite}): {cause}")
    if broken:
        for cause in broken:
            _raise_if_denied(cause, database)
        raise CjHealthError(f"{len(broken)} rule(s) could not run: " + "; ".join(broken))
    index = root / gx_context.DATA_DOCS_DIR / "index.html"
    return CheckpointOutcome(bool(result.success), rules, index)


def _raise_if_denied(message: str, database: Database) -> None:
    """A GX failure caused by a missing privilege: the one line every command gives (exit 2)."""
    # GX only reads: its statements are selects.
    line = privilege_line(message, database.params.get("user"), "select", database.display)
    if line:
        raise CjHealthError(line)


def _rule_result(outcome: Any, suite: str) -> RuleResult:
    config = outcome.expectation_config
    rule = (config.meta or {}).get("rule") or config.type
    details = outcome.result or {}
    batches: set[int] = set()
    rows = 0
    if "unexpected_rows" in (details.get("details") or {}):
        unexpected = details["details"]["unexpected_rows"]
        rows = int(details.get("observed_value") or len(unexpected))
        batches = {row["cj_batch_id"] for row in unexpected if row.get("cj_batch_id") is not None}
    else:
        rows = int(details.get("unexpected_count") or 0)
        for entry in details.get("unexpected_index_list") or []:
            if isinstance(entry, dict) and entry.get("cj_batch_id") is not None:
                batches.add(entry["cj_batch_id"])
    return RuleResult(
        rule=rule,
        suite=suite,
        success=bool(outcome.success),
        description=config.description or "",
        failing_batches=sorted(int(b) for b in batches)[:MAX_LISTED_BATCHES],
        failing_rows=rows,
    )


def _exception_message(info: Any) -> str | None:
    """The message of an exception GX caught while validating, if any. GX reports either one
    {raised_exception, exception_message} mapping or one such mapping per failed metric."""
    if not isinstance(info, dict):
        return None
    candidates = [info, *(value for value in info.values() if isinstance(value, dict))]
    for candidate in candidates:
        if candidate.get("raised_exception"):
            return str(candidate.get("exception_message") or "unknown error")
    return None


def _cause(message: str) -> str:
    """The database's own words from a wrapped SQL error, e.g. 'column "x" does not exist'."""
    found = re.search(r"\)\s*([^()\n]*does not exist[^\n]*)", message) or re.search(
        r"((?:relation|column|table|function)\s+\"?[\w.]+\"?[^\n]*does not exist)", message
    )
    return found.group(1).strip() if found else message
