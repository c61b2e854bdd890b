"""Safety of the target and of bad input: the guard judges the database actually connected,
every dev-data writer is guarded, schema settings never reach SQL unchecked, the eng5
commands honour CJ_SOURCE_SCHEMA, bad input is one line with its exit code and changes
nothing, and SIGTERM to `cj-health build` stops dbt and leaves no work folder. PGHOST/PGPORT
and a service file reach dbt and GX as libpq used them (the pure logic: test_edges.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest
from conftest import table_fingerprint
from psycopg import conninfo, sql

from cj_health import cli
from cj_health.build import build
from cj_health.db import Database, connect
from cj_health.dbt_runner import run_dbt
from cj_health.eng5.reset import reset
from cj_health.eng5.runner import execute_batch
from cj_health.errors import EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_USAGE, Refused
from cj_health.schema import SERVICE_TABLES, init_schema
from cj_health.target import verify


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def seeded(cj_env, tmp_path) -> Database:
    execute_batch(cj_env, seed=1, out_dir=tmp_path / "seed1")
    return cj_env


# --- one verified target --------------------------------------------------------------------


def test_the_guard_judges_the_database_connected_not_the_url(
    seeded, admin_db, monkeypatch, capsys
):
    """A URL without a database name: libpq connects to PGDATABASE, not to the user's name.
    A login named *_test must not make a production-like database resettable."""
    login = f"cjt_{uuid.uuid4().hex[:8]}_test"
    with connect(admin_db, autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login superuser").format(sql.Identifier(login)))
    try:
        params = conninfo.conninfo_to_dict(seeded.url)
        params.pop("dbname")
        params["user"] = login
        monkeypatch.setenv("CJ_DATABASE_URL", conninfo.make_conninfo(**params))
        monkeypatch.setenv("PGDATABASE", seeded.dbname)
        monkeypatch.delenv("CJ_ENVIRONMENT")
        before = table_fingerprint(seeded, SERVICE_TABLES)
        assert cli.main(["eng5", "reset"]) == EXIT_REFUSED
        assert seeded.dbname in one_error_line(capsys)
        assert table_fingerprint(seeded, SERVICE_TABLES) == before
        target = verify(Database(conninfo.make_conninfo(**params)))
        assert target.dbname == seeded.dbname
        assert f"/{seeded.dbname}" in target.display
        assert target.dbt_env["CJ_PGDATABASE"] == seeded.dbname
    finally:
        with connect(admin_db, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(login)))


@pytest.mark.parametrize(
    "argv",
    [
        ["eng5", "register-anchors"],
        ["eng5", "execute"],
        ["eng5", "replay-incident"],
        ["eng5", "replay-incident", "misattributed_projection"],
        ["demo"],
        ["eng5", "reset"],
    ],
)
@pytest.mark.parametrize("environment", ["production", "staging"])
def test_every_dev_data_writer_refuses_production(seeded, monkeypatch, capsys, argv, environment):
    monkeypatch.setenv("CJ_ENVIRONMENT", environment)
    before = table_fingerprint(seeded, SERVICE_TABLES)
    assert cli.main(argv) == EXIT_REFUSED
    assert one_error_line(capsys).startswith("cj-health: refusing to")
    assert table_fingerprint(seeded, SERVICE_TABLES) == before


def test_a_database_not_named_dev_or_test_is_refused_without_an_environment(
    seeded, monkeypatch, capsys
):
    monkeypatch.delenv("CJ_ENVIRONMENT")
    before = table_fingerprint(seeded, SERVICE_TABLES)
    assert cli.main(["eng5", "execute"]) == EXIT_REFUSED
    assert table_fingerprint(seeded, SERVICE_TABLES) == before
    assert "not a dev or test database" in one_error_line(capsys)


# --- schema settings ------------------------------------------------------------------------

CRAFTED = [
    ("CJ_SOURCE_SCHEMA", 'public"; drop table public.cj_batch_uploads cascade; --'),
    ("CJ_MONITORING_SCHEMA", "cj_monitoring'; drop table public.cj_batch_uploads; --"),
    ("CJ_SOURCE_SCHEMA", "Public"),
]


@pytest.mark.parametrize(("variable", "value"), CRAFTED)
@pytest.mark.parametrize("argv", [["build"], ["check"], ["inspect", "1"], ["eng5", "execute"]])
def test_a_schema_setting_that_is_no_plain_identifier_exits_2(
    seeded, monkeypatch, capsys, variable, value, argv
):
    before = table_fingerprint(seeded, SERVICE_TABLES)
    monkeypatch.setenv(variable, value)
    assert cli.main(argv) == EXIT_USAGE
    assert variable in one_error_line(capsys)
    monkeypatch.delenv(variable)
    assert table_fingerprint(seeded, SERVICE_TABLES) == before


def test_a_crafted_source_schema_var_stops_dbt_before_any_model(seeded):
    before = table_fingerprint(seeded, SERVICE_TABLES)
    result = build(seeded, dbt_vars={"cj_source_schema": CRAFTED[0][1]})
    assert result.exit_code == EXIT_USAGE
    assert "CJ_SOURCE_SCHEMA" in result.summary()
    assert table_fingerprint(seeded, SERVICE_TABLES) == before


# --- eng5 honours CJ_SOURCE_SCHEMA ----------------------------------------------------------


def test_eng5_commands_use_the_source_schema(empty_db, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("CJ_SOURCE_SCHEMA", "cjsvc")
    monkeypatch.setenv("CJ_DATABASE_URL", empty_db.url)
    monkeypatch.setenv("CJ_ENVIRONMENT", "test")
    assert cli.main(["db", "init"]) == 0
    assert cli.main(["eng5", "register-anchors"]) == 0
    assert cli.main(["eng5", "execute", "--out-dir", str(tmp_path / "run")]) == 0
    assert cli.main(["eng5", "replay-incident"]) == 0
    assert cli.main(["eng5", "reset"]) == 0
    with connect(empty_db) as conn:
        where = conn.execute(
            "select table_schema from information_schema.tables"
            " where table_name = 'cj_batch_uploads'"
        ).fetchall()
    assert where == [("cjsvc",)]


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["²", "١", "1.0", "-1", "0", "2147483648"])
def test_inspect_takes_ascii_digits_only(cj_env, capsys, raw):
    assert cli.main(["inspect", raw]) == EXIT_NOT_FOUND
    assert one_error_line(capsys).startswith("cj-health: no CJ batch")


def test_inspect_with_a_wrong_source_schema_says_so(seeded, monkeypatch, capsys):
    monkeypatch.setenv("CJ_SOURCE_SCHEMA", "no_such_schema")
    assert cli.main(["inspect", "1"]) == EXIT_USAGE
    assert "CJ_SOURCE_SCHEMA" in one_error_line(capsys)


@pytest.mark.parametrize(
    "argv", [["eng5", "execute", "--seed", "-1"], ["eng5", "replay-incident", "--seed", "-3"]]
)
def test_a_negative_seed_is_one_line_and_exit_2(seeded, capsys, argv):
    before = table_fingerprint(seeded, SERVICE_TABLES)
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == EXIT_USAGE
    assert "must be 0 or more" in one_error_line(capsys)
    assert table_fingerprint(seeded, SERVICE_TABLES) == before


def test_an_unwritable_out_dir_is_refused_before_the_batch_is_written(seeded, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    before = table_fingerprint(seeded, SERVICE_TABLES)
    assert cli.main(["eng5", "execute", "--out-dir", str(blocker / "run")]) == EXIT_USAGE
    assert "--out-dir" in one_error_line(capsys)
    assert table_fingerprint(seeded, SERVICE_TABLES) == before


@pytest.mark.parametrize(
    ("name", "value"),
    [("min_reliability", ".nan"), ("stuck_after_minutes", ".inf"),
     ("stalled_after_minutes", "-5"), ("min_reliability", "1.5")],
)
def test_thresholds_must_be_finite_and_in_range(seeded, name, value):
    """The values as YAML spells them on dbt's command line (`--vars`)."""
    result = run_dbt(
        seeded, ["run", "--select", "int_batch_health", "--vars", f"{{{name}: {value}}}"]
    )
    assert not result.ok
    assert f"var {name} must be a finite number" in result.output


def test_reset_of_the_verified_database_still_refuses_production(cj_db):
    with pytest.raises(Refused):
        reset(cj_db, env={"CJ_ENVIRONMENT": "production"})


# --- processes ------------------------------------------------------------------------------


def test_sigterm_to_build_stops_dbt_and_leaves_no_work_folder(seeded):
    env = {**os.environ, "CJ_DATABASE_URL": seeded.url, "GX_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cj_health.cli", "build"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    parent = psutil.Process(proc.pid)
    dbt = None
    for _ in range(600):  # poll until dbt has started (no timing is asserted)
        children = [c for c in parent.children() if "dbt" in " ".join(c.cmdline())]
        if children:
            dbt = children[0]
            break
        time.sleep(0.1)
    assert dbt is not None
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert err.strip().endswith("cj-health: interrupted")
    assert not dbt.is_running() or dbt.status() == psutil.STATUS_ZOMBIE
    leftovers = list(Path(tempfile.gettempdir()).glob(f"cj-health-dbt-{proc.pid}-*"))
    assert leftovers == []


def test_db_where_starts_no_server(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CJ_HEALTH_PROJECT_DIR", str(tmp_path))
    monkeypatch.delenv("CJ_DATABASE_URL", raising=False)
    assert cli.main(["db", "where"]) == 0
    assert "(not running)" in capsys.readouterr().out
    assert not (tmp_path / ".cj-health" / "pgdata").exists()
    assert cli.main(["db", "env"]) == EXIT_USAGE
    assert "not running" in one_error_line(capsys)


def test_init_schema_target_is_the_source_schema(empty_db, monkeypatch):
    monkeypatch.setenv("CJ_SOURCE_SCHEMA", "cjsvc")
    init_schema(empty_db)
    with connect(empty_db) as conn:
        assert conn.execute("select to_regclass('cjsvc.cj_batch_uploads')").fetchone()[0]


# --- one server for every tool: what libpq used -------------------------------------------


def _server_of(database: Database) -> tuple[str, int, str]:
    """(host or socket directory, port, user) libpq used for `database`."""
    with connect(database) as conn:
        return conn.info.host, conn.info.port, conn.info.user


def _reached(url: str) -> tuple[int, str]:
    """(the server's port, the database) a SQLAlchemy URL reaches, as GX connects."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("select current_setting('port')::int, current_database()")
            ).one()
    finally:
        engine.dispose()
    return row[0], row[1]


def test_pgport_and_pghost_reach_dbt_gx_and_db_env_as_libpq_used_them(
    cj_env, monkeypatch, capsys
):
    """A URL with neither host nor port: libpq takes PGHOST and PGPORT. dbt, GX and `db env`
    are handed what it used, not localhost:5432, so `build` lands in the same database."""
    host, port, user = _server_of(cj_env)
    monkeypatch.setenv("CJ_DATABASE_URL", f"postgresql:///{cj_env.dbname}?user={user}")
    monkeypatch.setenv("PGHOST", host)
    monkeypatch.setenv("PGPORT", str(port))
    target = verify(cj_db_from_env())
    assert target.display.endswith(f"{host}:{port}/{cj_env.dbname}")
    assert (target.dbt_env["CJ_PGHOST"], target.dbt_env["CJ_PGPORT"]) == (host, str(port))
    assert _reached(target.sqlalchemy_url) == (_server_port(cj_env), cj_env.dbname)
    assert cli.main(["db", "env"]) == 0
    exports = capsys.readouterr().out
    assert f"export CJ_PGPORT={port}" in exports and "CJ_PGHOST=" in exports
    # dbt, from the pinned target alone (the variables gone): its view lands in this database.
    monkeypatch.delenv("PGHOST")
    monkeypatch.delenv("PGPORT")
    result = run_dbt(target.database, ["run", "--select", "stg_cj__batch_uploads"])
    assert result.ok, result.output[-2000:]
    with connect(cj_env) as conn:
        assert conn.execute(
            "select to_regclass('cj_monitoring.stg_cj__batch_uploads')"
        ).fetchone()[0]


def cj_db_from_env() -> Database:
    return Database(os.environ["CJ_DATABASE_URL"])


def _server_port(database: Database) -> int:
    with connect(database) as conn:
        return int(conn.execute("select current_setting('port')").fetchone()[0])


def test_a_service_file_naming_the_server_is_what_every_tool_gets(
    cj_env, tmp_path, monkeypatch, capsys
):
    host, port, user = _server_of(cj_env)
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[cj_monitoring_test]\nhost={host}\nport={port}\nuser={user}\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    monkeypatch.setenv("CJ_DATABASE_URL", f"service=cj_monitoring_test dbname={cj_env.dbname}")
    assert cli.main(["db", "where"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{host}:{port}/{cj_env.dbname}")
    target = verify(cj_db_from_env())
    monkeypatch.delenv("PGSERVICEFILE")  # the target holds what libpq read from the file
    assert _reached(target.sqlalchemy_url) == (_server_port(cj_env), cj_env.dbname)
    assert target.dbt_env["CJ_PGPORT"] == str(port)

