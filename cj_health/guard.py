"""`dev_only`: the one guard of every command that writes dev data (`eng5 reset`,
`eng5 register-anchors`, `eng5 execute`, `eng5 replay-incident`, `demo`).

It judges the database actually connected (cj_health.target: `current_database()`), never the
name a URL seems to hold. Checked before anything is written:
- CJ_ENVIRONMENT must be unset or one of `dev`, `test`, `staging`, `production` (any case):
  any other value (`prod`, `staging2`) fails closed, a refusal that lists them;
- CJ_ENVIRONMENT `staging` or `production` always refuses;
- the embedded server always counts as dev;
- any other server must have a database named `*_dev` or `*_test`, or CJ_ENVIRONMENT must be
  `dev` or `test`.
A refusal raises `Refused` (exit 3) and changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cj_health.errors import Refused
from cj_health.target import Target
from cj_health.text import escape

PROTECTED_ENVIRONMENTS = ("staging", "production")
DEV_ENVIRONMENTS = ("dev", "test")
ENVIRONMENTS = (*DEV_ENVIRONMENTS, *PROTECTED_ENVIRONMENTS)
DEV_NAME_SUFFIXES = ("_dev", "_test")


def judge_dev_target(
    action: str, dbname: str, *, embedded: bool, display: str, env: Mapping[str, str]
) -> None:
    """Raise Refused unless a database named `dbname` may take dev data (module docstring)."""
    declared = env.get("CJ_ENVIRONMENT", "").strip().lower()
    if declared and declared not in ENVIRONMENTS:  # a typo must not count as unset
        raise Refused(
            f"refusing to {action} {display}: CJ_ENVIRONMENT is {escape(repr(declared))}, none"
            f" of {', '.join(ENVIRONMENTS)} (or unset)"
        )
    if declared in PROTECTED_ENVIRONMENTS:
        raise Refused(
            f"refusing to {action} {display}: CJ_ENVIRONMENT is {declared}; "
            f"{action} is for dev and test databases only"
        )
    if embedded:
        return
    if dbname.endswith(DEV_NAME_SUFFIXES) or declared in DEV_ENVIRONMENTS:
        return
    raise Refused(
        f"refusing to {action} {display}: not a dev or test database (its name"
        f" {escape(repr(dbname))} "
        "does not end in _dev or _test, and CJ_ENVIRONMENT is not dev or test)"
    )


def dev_only(target: Target, action: str, env: Mapping[str, str] | None = None) -> Target:
    """Raise Refused unless `target` (verified) is a dev or test database; return it."""
    env = os.environ if env is None else env
    judge_dev_target(
        action, target.dbname, embedded=target.embedded, display=target.display, env=env
    )
    return target
