"""The tool's edges as pure logic, no database: the target pinned to what libpq used, the
one line for a missing privilege, text checked on the way in and escaped on the way out,
CJ_ENVIRONMENT failing closed, and `--version`. The same behaviours against a real server are
in test_safety.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from psycopg import conninfo

from cj_health import cli
from cj_health.db import Database, dbt_env, parse_url, pinned_url
from cj_health.db_errors import needed_privilege, privilege_line
from cj_health.errors import EXIT_REFUSED, EXIT_USAGE, DatabaseUnavailable, Refused
from cj_health.guard import ENVIRONMENTS, judge_dev_target
from cj_health.gx.connection import sqlalchemy_url
from cj_health.text import check_input, escape

pytestmark = pytest.mark.unit


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


def info(parameters: dict[str, str], **values) -> SimpleNamespace:
    """What conn.info reports after connecting: the values used, and libpq's resolved
    parameters (`get_parameters()`: URL, PG* variables and service file, never the password)."""
    return SimpleNamespace(
        **{"hostaddr": "", **values}, get_parameters=lambda: dict(parameters)
    )


# --- the target: what libpq used ------------------------------------------------------------


def test_a_socket_url_without_port_is_pinned_to_the_port_libpq_used():
    """`CJ_DATABASE_URL='postgresql://postgres@%2Ftmp/x_dev' PGPORT=55441`."""
    used = {"host": "/tmp", "port": "55441", "dbname": "x_dev", "user": "postgres"}
    pinned = Database(
        pinned_url("postgresql://postgres@%2Ftmp/x_dev", info(used, **{**used, "port": 55441}))
    )
    assert pinned.display == "/tmp:55441/x_dev"
    env = dbt_env(pinned)
    assert (env["CJ_PGHOST"], env["CJ_PGPORT"], env["CJ_PGDATABASE"]) == ("/tmp", "55441", "x_dev")
    gx = sqlalchemy_url(pinned)
    assert gx.startswith("postgresql+psycopg://postgres@/x_dev?")
    assert "host=%2Ftmp" in gx and "port=55441" in gx


def test_a_service_files_settings_are_resolved_into_the_target():
    """The URL names a service; libpq read host, port and sslmode from the file. The target
    holds them itself, so no client depends on the file (or its absence) later."""
    url = "service=reporting dbname=cj user=monitor password=s3cret"
    used = {
        "service": "reporting", "dbname": "cj", "user": "monitor", "host": "db-b.internal",
        "port": "6432", "sslmode": "verify-full",
    }  # fmt: skip
    pinned = Database(
        pinned_url(url, info(used, host="db-b.internal", port=6432, dbname="cj", user="monitor"))
    )
    params = pinned.params
    assert (params["host"], params["port"], params["sslmode"]) == (
        "db-b.internal", "6432", "verify-full"
    )  # fmt: skip
    assert "service" not in params and params["password"] == "s3cret"
    env = dbt_env(pinned)
    assert env["CJ_PGHOST"] == "db-b.internal" and env["CJ_PGPORT"] == "6432"
    assert env["PGSSLMODE"] == "verify-full" and "PGSERVICE" not in env
    assert "s3cret" not in pinned.display


def test_an_address_given_is_pinned_and_reaches_dbt_and_gx():
    used = {"host": "db.internal", "hostaddr": "10.1.2.3,10.1.2.4", "dbname": "cj", "user": "m"}
    pinned = Database(
        pinned_url(
            "postgresql://m@db.internal/cj?hostaddr=10.1.2.3,10.1.2.4",
            info(used, host="db.internal", hostaddr="10.1.2.4", port=5432, dbname="cj", user="m"),
        )
    )
    assert pinned.params["hostaddr"] == "10.1.2.4"  # the one of the list connected to
    assert dbt_env(pinned)["PGHOSTADDR"] == "10.1.2.4"
    assert "hostaddr=10.1.2.4" in sqlalchemy_url(pinned)


def test_a_resolved_name_is_not_pinned_to_one_address():
    """libpq reports the address a name resolved to as `hostaddr`, and its default
    sslcertmode as set: neither is pinned."""
    used = {
        "host": "db.internal", "hostaddr": "10.1.2.3", "dbname": "cj", "user": "m",
        "sslcertmode": "allow",
    }  # fmt: skip
    pinned = Database(
        pinned_url(
            "postgresql://m@db.internal/cj",
            info(used, host="db.internal", hostaddr="10.1.2.3", port=5432, dbname="cj", user="m"),
        )
    )
    assert "hostaddr" not in pinned.params and "sslcertmode" not in pinned.params


def test_a_database_url_that_is_not_utf8_is_one_line(monkeypatch, capsys):
    with pytest.raises(DatabaseUnavailable, match="not valid UTF-8"):
        parse_url("postgresql://u@h/db\udcff")
    monkeypatch.setenv("CJ_DATABASE_URL", "postgresql://u@h/db\udcff")
    assert cli.main(["status"]) == EXIT_USAGE
    assert "CJ_DATABASE_URL is not valid UTF-8" in one_error_line(capsys)


# --- a missing privilege, named ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "statement", "wanted"),
    [
        ("permission denied for schema cj_monitoring", "select 1 from x", "needs USAGE"),
        ("permission denied for schema cj_monitoring", "create table x (a int)", "needs CREATE"),
        ("permission denied for table cj_batch_uploads", "select id from t", "needs SELECT"),
        (
            "permission denied for table cj_batch_acknowledgements",
            "insert into cj_monitoring.cj_batch_acknowledgements (a) values (1)",
            "needs INSERT",
        ),
        (
            "permission denied for table cj_batch_uploads",
            "insert into cj_monitoring.t select id from public.cj_batch_uploads",
            "needs SELECT",
        ),
        ("permission denied for database cjt_x", "create schema s", "needs CREATE"),
        (
            "permission denied for table cj_batch_facts_watermark",
            "lock table cj_monitoring.cj_batch_facts_watermark in share row exclusive mode",
            "needs UPDATE, DELETE or TRUNCATE",
        ),
        (
            "must be owner of materialized view cj_batch_health",
            "refresh materialized view concurrently x",
            "does not own it",
        ),
    ],
)
def test_the_privilege_line_names_relation_role_and_privilege(message, statement, wanted):
    line = privilege_line(message, "grafana_cj", statement)
    assert line is not None and "\n" not in line
    assert message in line and "role grafana_cj" in line and wanted in line


def test_dbt_output_quoting_a_denial_is_mapped_and_other_text_is_not():
    dbt_output = (
        "\x1b[0m10:00:01  Database Error in model stg_cj__batch_uploads\n"
        "  permission denied for table cj_batch_uploads\n  compiled code at target/x.sql"
    )
    # dbt's statement is not known: the likely privilege, said as such
    assert "needs SELECT (or the write its statement made)" in privilege_line(dbt_output, "m")
    assert privilege_line("[Errno 13] Permission denied: '/opt/x'", "monitor") is None
    assert needed_privilege("function", "f") == "EXECUTE"
    assert needed_privilege("schema", "s").startswith("USAGE")


# --- text in, text out ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["ack", "1", "--reason", "bad\udcff"], "--reason is not valid UTF-8"),
        (["ack", "1", "--reason", "ok", "--until", "2030-01-01\udcff"], "--until"),
        (["ack", "--before", "2030\udcff", "--reason", "ok"], "--before"),
        (["ack", "1", "--reason", "\x1b[31mred\x1b[0m\nsecond line"], "control character"),
        (["ack", "1", "--reason", "evil \u202e txt"], "control character"),
        (["ack", "1", "--issue", "STALLED\x07", "--reason", "ok"], "--issue"),
        (["eng5", "execute", "--batch-id", "b\x1b]0;x\x07"], "--batch-id"),
    ],
)
def test_arguments_are_utf8_without_control_characters(monkeypatch, capsys, argv, named):
    """Checked before any command runs: no database is needed to refuse them."""
    monkeypatch.setenv("CJ_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert cli.main(argv) == EXIT_USAGE
    line = one_error_line(capsys)
    assert named in line
    assert "\x1b" not in line and "\udcff" not in line and "\u202e" not in line


def test_a_reason_may_span_lines_and_tabs():
    assert check_input("line one\n\tline two", "--reason", free_text=True)


def test_escape_shows_every_control_character_and_keeps_text():
    shown = escape("\x1b[31mred\x1b[0m\nsecond line \u202e é \udcff")
    assert shown == "\\x1b[31mred\\x1b[0m\\nsecond line \\u202e é \\udcff"


# --- CJ_ENVIRONMENT fails closed --------------------------------------------------------------


@pytest.mark.parametrize("value", ["prod", "staging2", "dev1", "tset"])
@pytest.mark.parametrize("embedded", [True, False])
def test_an_unknown_environment_is_refused_listing_the_accepted_values(value, embedded):
    with pytest.raises(Refused) as refused:
        judge_dev_target(
            "reset", "x_dev", embedded=embedded, display="h:5432/x_dev",
            env={"CJ_ENVIRONMENT": value},
        )  # fmt: skip
    assert refused.value.exit_code == EXIT_REFUSED
    assert all(name in str(refused.value) for name in ENVIRONMENTS)


@pytest.mark.parametrize("value", ["", "dev", "TEST", " test "])
def test_the_documented_values_are_accepted(value):
    judge_dev_target("reset", "x_dev", embedded=False, display="h", env={"CJ_ENVIRONMENT": value})


# --- the installed tool -----------------------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == "cj-health 0.1.0"


def test_the_urls_options_reach_dbt_without_the_tools_own_search_path():
    """connect() appends the source schema's search_path to every session's options; the
    target keeps only the URL's own (dbt gets them as PGOPTIONS)."""
    used = {
        "host": "/tmp", "dbname": "x", "user": "u",
        "options": "-c statement_timeout=5s -c search_path=public",
    }  # fmt: skip
    url = pinned_url(
        "postgresql://u@/x?host=/tmp&options=-c%20statement_timeout%3D5s",
        info(used, host="/tmp", port=5433, dbname="x", user="u"),
    )
    assert conninfo.conninfo_to_dict(url)["options"] == "-c statement_timeout=5s"
    assert dbt_env(Database(url))["PGOPTIONS"] == "-c statement_timeout=5s"
