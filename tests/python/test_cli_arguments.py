"""Argument parsing and target resolution, before anything connects (cj_health.cli, .db)."""

from __future__ import annotations

import pytest

from cj_health.cli import build_parser
from cj_health.db import monitoring_schema, parse_url, resolve_database, source_schema
from cj_health.errors import EXIT_USAGE, CjHealthError, DatabaseUnavailable

pytestmark = pytest.mark.unit


def test_check_defaults_to_a_table_after_a_refresh() -> None:
    args = build_parser().parse_args(["check"])
    assert args.json is False and args.refresh is True
    args = build_parser().parse_args(["check", "--json", "--no-refresh"])
    assert args.json is True and args.refresh is False


def test_build_is_quiet_about_dbts_log_unless_verbose() -> None:
    assert build_parser().parse_args(["build"]).verbose is False
    assert build_parser().parse_args(["build", "--verbose"]).verbose is True


def test_refresh_takes_full() -> None:
    assert build_parser().parse_args(["refresh"]).full is False
    assert build_parser().parse_args(["refresh", "--full"]).full is True


@pytest.mark.parametrize(
    "argv", [[], ["no-such-command"], ["check", "--no-such-flag"], ["build", "extra"]]
)
def test_a_bad_command_line_is_one_line_and_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    assert stop.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("cj-health")


def test_cj_database_url_names_the_target_without_starting_anything() -> None:
    url = " postgresql://cj:secret@db.example:6432/cj_dev "
    database = resolve_database({"CJ_DATABASE_URL": url})
    assert database.embedded is False
    assert database.display == "db.example:6432/cj_dev"
    assert "secret" not in database.display


def test_a_url_libpq_cannot_read_is_refused_without_echoing_it() -> None:
    with pytest.raises(DatabaseUnavailable) as error:
        parse_url("postgresql://cj:secret@db:notaport/x?sslmode")
    assert "secret" not in str(error.value) and "not a valid libpq URL" in str(error.value)


def test_schemas_default_and_must_be_plain_identifiers() -> None:
    assert monitoring_schema({}) == "cj_monitoring"
    assert source_schema({"CJ_SOURCE_SCHEMA": "cj_service"}) == "cj_service"
    for bad in ("Public", "cj-monitoring", 'x"; drop', "a" * 64):
        with pytest.raises(CjHealthError, match="CJ_MONITORING_SCHEMA must be a plain"):
            monitoring_schema({"CJ_MONITORING_SCHEMA": bad})
