"""The dev-data guard (cj_health.guard): which databases may take dev data."""

from __future__ import annotations

import pytest

from cj_health.errors import Refused
from cj_health.guard import judge_dev_target

pytestmark = pytest.mark.unit


def judge(dbname: str, env: dict[str, str], *, embedded: bool = False) -> None:
    judge_dev_target("reset", dbname, embedded=embedded, display=f"db:5432/{dbname}", env=env)


@pytest.mark.parametrize("dbname", ["cj_dev", "cj_assessment_test"])
def test_a_dev_or_test_name_may_take_dev_data(dbname: str) -> None:
    judge(dbname, {})


@pytest.mark.parametrize("declared", ["dev", "TEST", " test "])
def test_a_declared_dev_environment_may_take_dev_data(declared: str) -> None:
    judge("cj_assessment", {"CJ_ENVIRONMENT": declared})


def test_the_embedded_server_counts_as_dev() -> None:
    judge("cj_assessment", {}, embedded=True)


def test_another_name_is_refused_and_named() -> None:
    with pytest.raises(Refused, match="refusing to reset db:5432/cj_assessment: not a dev"):
        judge("cj_assessment", {})


@pytest.mark.parametrize("declared", ["production", "Staging"])
def test_a_protected_environment_always_refuses(declared: str) -> None:
    for embedded in (False, True):
        with pytest.raises(Refused, match="for dev and test databases only"):
            judge("cj_dev", {"CJ_ENVIRONMENT": declared}, embedded=embedded)


@pytest.mark.parametrize("declared", ["prod", "staging2", "develop"])
def test_an_unknown_environment_fails_closed_and_lists_the_known_ones(declared: str) -> None:
    with pytest.raises(Refused, match="none of dev, test, staging, production"):
        judge("cj_dev", {"CJ_ENVIRONMENT": declared}, embedded=True)
