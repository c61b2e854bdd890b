"""Run the GX checkpoint against a database and summarise each rule's result.

GX is imported only when a check runs (slow to import; the CLI must not load it at start).
The checkpoint's validation definitions run one at a time, so that the caller can report
each suite as it ends, then the checkpoint's Data Docs site is updated for their results.
GX's progress bars and log chatter are silenced, and anything it prints is swallowed: the
caller prints the summary. Expected failures become one-line CjHealthErrors (exit 2) that
name what is missing; a password never reaches a message.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator
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


def run_checkpoint(
    database: Database, root: Path, *, progress: Callable[[str], None] | None = None
) -> CheckpointOutcome:
    """Run the `cj_health` checkpoint of the context in `root`: each of its validation
    definitions, with the checkpoint's result format and one run id (`progress`, if given,
    gets one line per suite as it ends), then its Data Docs update for these results."""
    quiet_gx()
    os.environ[CONNECTION_VARIABLE] = sqlalchemy_url(database)
    validations = []
    try:
        with _swallowed():
            from great_expectations.core.run_identifier import RunIdentifier

            import great_expectations as gx

            context = gx.get_context(mode="file", context_root_dir=str(root))
            checkpoint = context.checkpoints.get(gx_context.CHECKPOINT)
            run_id = RunIdentifier(run_time=datetime.datetime.now(datetime.UTC))
        if not checkpoint.validation_definitions:
            raise CjHealthError(f"the GX checkpoint {gx_context.CHECKPOINT} validates nothing")
        for definition in checkpoint.validation_definitions:
            with _swallowed():
                validation = definition.run(
                    checkpoint_id=checkpoint.id,
                    result_format=checkpoint.result_format,
                    run_id=run_id,
                )
            validations.append(validation)
            if progress:
                progress(_suite_line(validation))
        with _swallowed():
            _update_data_docs(context, validations, run_id)
    except CjHealthError:
        raise
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
    for validation in validations:
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
    success = all(validation.success for validation in validations)
    return CheckpointOutcome(success, rules, index)


@contextlib.contextmanager
def _swallowed() -> Iterator[None]:
    """Whatever GX prints while it works goes nowhere: the caller prints the summary."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _suite_line(validation: Any) -> str:
    """One line per validated suite: its name, how many of its rules hold, its verdict."""
    statistics = validation.statistics or {}
    total = int(statistics.get("evaluated_expectations") or len(validation.results))
    held = int(statistics.get("successful_expectations") or 0)
    verdict = "ok" if validation.success else "FAIL"
    return f"{validation.suite_name}: {held} of {total} rules hold ({verdict})"


def _update_data_docs(context: Any, validations: list[Any], run_id: Any) -> None:
    """What the checkpoint's update_data_docs action does: the Data Docs pages of these
    validation results and their suites, and the site index."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    identifiers: list[Any] = []
    for validation in validations:
        suite = ExpectationSuiteIdentifier(name=validation.suite_name)
        identifiers += [
            ValidationResultIdentifier(
                expectation_suite_identifier=suite,
                run_id=run_id,
                batch_identifier=validation.batch_id,
            ),
            suite,
        ]
    context.build_data_docs(
        site_names=[gx_context.DATA_DOCS_SITE], resource_identifiers=identifiers
    )


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
