"""Safety of the target and of bad input: the guard judges the database actually connected,
every dev-data writer is guarded, schema settings never reach SQL unchecked, the eng5
commands honour CJ_SOURCE_SCHEMA, bad input is one line with its exit code and changes
nothing, and SIGTERM to `cj-health build` stops dbt and leaves no work folder.

Against a real server too: PGHOST/PGPORT and a service file reach dbt and GX as libpq used
them; a role without grants gets one line naming the privilege from every command; the
refresh's hint follows its cause; bytes that are not UTF-8 and control characters are refused
at input, and stored text from another writer is shown escaped; an unknown CJ_ENVIRONMENT
fails closed; a reader that closes the pipe gets a quiet exit. (The pure logic of the same
edges: test_edges.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from conftest import cloned_database, table_fingerprint
from psycopg import conninfo, sql

from cj_health import cli
from cj_health.build import BUILD_ARGS, build
from cj_health.db import Database, connect
from cj_health.dbt_runner import run_dbt
from cj_health.eng5.reset import reset
from cj_health.eng5.runner import execute_batch
from cj_health.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_USAGE,
    Refused,
)
from cj_health.schema import SERVICE_TABLES, init_schema
from cj_health.target import verify


def one_error_line(capsys) -> str:
    """The one error line on stderr; `build` and `check` may have printed their progress
    lines (indented, one per dbt node or GX suite) before it."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines(keepends=True) if not line.startswith("  ")]
    assert len(lines) == 1 and lines[0].endswith("\n"), err
    return lines[0]


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


def test_eval_of_db_env_sends_psql_to_the_target(cj_env, tmp_path, monkeypatch):
    """`eval "$(cj-health db env)"` sets libpq's PG* variables to the pinned target and unsets
    the others, so a psql that follows reaches the same database, not the one a leftover
    PGPORT, PGSERVICE or PGHOSTADDR names."""
    host, port, user = _server_of(cj_env)
    monkeypatch.setenv("CJ_DATABASE_URL", conninfo.make_conninfo(
        host=host, port=port, user=user, dbname=cj_env.dbname))  # fmt: skip
    shell = (
        f'eval "$({sys.executable} -m cj_health.cli db env)" && '
        "psql -X -A -t -c \"select current_setting('port') || '/' || current_database()\""
    )
    # A service that names another database: the URL's own parameters win over it for
    # cj-health, but for a bare psql it would win over PGDATABASE unless db env unsets it.
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[elsewhere]\nhost={host}\nport={port}\ndbname=postgres\n")
    environment = {**os.environ, "PGHOST": "/nonexistent", "PGPORT": "1", "PGUSER": "nobody",
                   "PGDATABASE": "postgres", "PGSERVICEFILE": str(services),
                   "PGSERVICE": "elsewhere"}  # fmt: skip
    done = subprocess.run(["bash", "-c", shell], env=environment, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{_server_port(cj_env)}/{cj_env.dbname}"


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


# --- a missing privilege: one line, exit 2, for every command ---------------------------------


@pytest.fixture(scope="module")
def built_template(admin_db, schema_template, tmp_path_factory) -> Iterator[tuple[str, int]]:
    """A database with one healthy ENG5 batch and the monitoring built (dbt's models), to be
    cloned; yields (name, the batch id)."""
    with cloned_database(admin_db, schema_template) as database:
        run = execute_batch(database, seed=3, out_dir=tmp_path_factory.mktemp("run"))
        result = run_dbt(database, BUILD_ARGS)
        assert result.ok, result.output[-3000:]
        yield database.dbname, run.cj_batch_id


@pytest.fixture
def built(make_database, built_template, monkeypatch) -> tuple[Database, int]:
    name, batch = built_template
    database = make_database(template=name)
    monkeypatch.setenv("CJ_DATABASE_URL", database.url)
    return database, batch


@contextmanager
def login_role(admin: Database, *granted: str) -> Iterator[str]:
    """A new LOGIN role (cluster-wide), granted `granted` roles only; dropped afterwards."""
    name = f"cjt_login_{uuid.uuid4().hex[:8]}"
    with connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
        for role in granted:
            conn.execute(
                sql.SQL("grant {} to {}").format(sql.Identifier(role), sql.Identifier(name))
            )
    try:
        yield name
    finally:
        with connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))


def as_role(database: Database, role: str) -> str:
    params = conninfo.conninfo_to_dict(database.url)
    params.pop("password", None)
    params["user"] = role
    return conninfo.make_conninfo(**params)


@pytest.mark.parametrize(
    ("argv", "privilege"),
    [
        (["status"], "USAGE"),
        (["inspect", "{batch}"], "SELECT"),
        (["check"], "USAGE"),
        (["build"], "needs CREATE"),
        (["refresh"], "USAGE"),
        (["ack", "{batch}", "--reason", "known"], "USAGE"),
        (["ack", "--list"], "USAGE"),
        (["unack", "{batch}"], "USAGE"),
    ],
)
def test_a_role_without_grants_gets_one_line_naming_the_privilege(
    built, admin_db, monkeypatch, capsys, argv, privilege
):
    database, batch = built
    with login_role(admin_db) as role:
        monkeypatch.setenv("CJ_DATABASE_URL", as_role(database, role))
        before = table_fingerprint(database, SERVICE_TABLES)
        assert cli.main([arg.format(batch=batch) for arg in argv]) == EXIT_USAGE
        line = one_error_line(capsys)
    assert "permission denied" in line and role in line and privilege in line, line
    assert table_fingerprint(database, SERVICE_TABLES) == before


def test_the_refresh_hint_names_the_grant_when_a_privilege_is_missing(
    built, admin_db, monkeypatch, capsys
):
    """Grafana's reader may read the marts but not refresh them: the hint is the privilege,
    not `cj-health build` (which would not help)."""
    database, _ = built
    with login_role(admin_db, "cj_health_reader") as role:
        monkeypatch.setenv("CJ_DATABASE_URL", as_role(database, role))
        assert cli.main(["refresh"]) == EXIT_USAGE
        line = one_error_line(capsys)
    assert line.startswith("cj-health: refreshing cj_monitoring.cj_batch_health failed:")
    # The refresh's first statement locks the facts' watermark (before its snapshot): the
    # reader lacks the privilege that lock needs, and the line names it.
    assert role in line and "cj_batch_facts_watermark" in line, line
    assert "needs UPDATE, DELETE or TRUNCATE (to lock it)" in line, line
    assert "cj-health build`" not in line


def test_the_refresh_hint_on_a_lock_timeout_says_retry_and_who_holds_the_lock(
    built, capsys
):
    database, _ = built
    with connect(database, autocommit=True) as conn:
        conn.execute(
            sql.SQL("alter database {} set lock_timeout = '200ms'").format(
                sql.Identifier(database.dbname)
            )
        )
    holder = connect(database)  # another refresh, or a migration, mid-transaction
    try:
        holder.execute(
            "lock table cj_monitoring.cj_batch_facts_watermark in share row exclusive mode"
        )
        holder_pid = holder.info.backend_pid
        assert cli.main(["refresh"]) == EXIT_USAGE
        line = one_error_line(capsys)
    finally:
        holder.close()
    assert "lock timeout" in line and "retry" in line and f"pid {holder_pid}" in line, line
    assert "cj-health build`" not in line
    assert cli.main(["refresh"]) == 0  # the lock gone, the same refresh succeeds


def test_register_anchors_without_the_cj_schema_says_to_init(empty_db, monkeypatch, capsys):
    monkeypatch.setenv("CJ_DATABASE_URL", empty_db.url)
    monkeypatch.setenv("CJ_ENVIRONMENT", "test")
    assert cli.main(["eng5", "register-anchors"]) == EXIT_USAGE
    assert "run `cj-health db init` first" in one_error_line(capsys)


# --- text: refused at input, escaped at output -----------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [b"ack", b"1", b"--reason", b"bad\xff"],
        [b"ack", b"1", b"--reason", b"ok", b"--until", b"2030-01-01\xff"],
        [b"ack", b"--before", b"2030\xfe", b"--reason", b"ok"],
    ],
)
def test_bytes_that_are_not_utf8_are_one_line_and_change_nothing(built, argv):
    database, _ = built
    env = {**os.environb, b"CJ_DATABASE_URL": database.url.encode()}
    proc = subprocess.run(
        [sys.executable.encode(), b"-m", b"cj_health.cli", *argv], env=env,
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == EXIT_USAGE
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "not valid UTF-8" in err and "Traceback" not in err, err
    assert acknowledgement_count(database) == 0


def test_a_database_url_with_bytes_that_are_not_utf8_is_one_line():
    env = {**os.environb, b"CJ_DATABASE_URL": b"postgresql://u@127.0.0.1:1/db\xff"}
    proc = subprocess.run(
        [sys.executable.encode(), b"-m", b"cj_health.cli", b"status"], env=env,
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == EXIT_USAGE
    assert proc.stderr.decode() == "cj-health: CJ_DATABASE_URL is not valid UTF-8\n"


def acknowledgement_count(database: Database) -> int:
    with connect(database) as conn:
        return conn.execute(
            "select count(*) from cj_monitoring.cj_batch_acknowledgements"
        ).fetchone()[0]


TERMINAL_ESCAPE = "\x1b[31mred\x1b[0m\nsecond line \u202e"


def test_control_characters_are_refused_at_input_and_nothing_is_stored(built, capsys):
    database, batch = built
    assert cli.main(["ack", str(batch), "--reason", TERMINAL_ESCAPE]) == EXIT_USAGE
    assert "control character" in one_error_line(capsys)
    assert acknowledgement_count(database) == 0


def test_stored_text_from_another_writer_is_shown_escaped(built, capsys):
    """Rows written past the CLI (SQL by hand, another tool): ack --list, status and inspect
    show their text escaped; JSON escapes it by itself."""
    database, batch = built
    with connect(database) as conn:
        conn.execute(
            "insert into cj_monitoring.cj_batch_acknowledgements (cj_batch_id, problem_code,"
            " reason) values (%s, 'STALLED', %s)",
            (batch, TERMINAL_ESCAPE),
        )
        conn.execute(
            "update cj_batch_uploads set bos_batch_id = %s, course_code = %s where id = %s",
            (f"bos{TERMINAL_ESCAPE}", "ENG5\x1b]0;owned\x07", batch),
        )
    shown = []
    for argv in (["ack", "--list"], ["status"], ["inspect", str(batch)]):
        for json_flag in ([], ["--json"]):
            assert cli.main([*argv, *json_flag]) in (0, 1), argv
            shown.append(capsys.readouterr().out)
    for out in shown:
        assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out, out
    assert "\\x1b[31mred\\x1b[0m\\nsecond line \\u202e" in shown[0]
    assert "bos\\x1b[31mred" in shown[4] and "ENG5\\x1b]0;owned\\x07" in shown[4]


# --- CJ_ENVIRONMENT fails closed --------------------------------------------------------------


@pytest.mark.parametrize("value", ["prod", "staging2"])
def test_an_unknown_environment_on_a_dev_database_is_refused(
    admin_db, schema_template, monkeypatch, capsys, value
):
    name = f"cjt_{uuid.uuid4().hex[:8]}_dev"
    with cloned_database(admin_db, schema_template, name) as database:
        monkeypatch.setenv("CJ_DATABASE_URL", database.url)
        monkeypatch.delenv("CJ_ENVIRONMENT", raising=False)
        assert cli.main(["eng5", "register-anchors"]) == 0  # *_dev alone allows dev data
        capsys.readouterr()
        monkeypatch.setenv("CJ_ENVIRONMENT", value)
        before = table_fingerprint(database, SERVICE_TABLES)
        for argv in (["eng5", "reset"], ["eng5", "register-anchors"], ["eng5", "replay-incident"]):
            assert cli.main(argv) == EXIT_REFUSED
            line = one_error_line(capsys)
            assert repr(value) in line and "dev, test, staging, production" in line
        assert table_fingerprint(database, SERVICE_TABLES) == before


# --- a reader that goes away ------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["ack", "--list"], ["status"]])
def test_a_closed_pipe_is_a_quiet_exit(built, argv):
    """`cj-health ack --list | head -1`: the reader is gone before anything is written."""
    database, batch = built
    with connect(database) as conn:
        conn.execute(
            "insert into cj_monitoring.cj_batch_acknowledgements (cj_batch_id, problem_code,"
            " reason) values (%s, 'STALLED', 'known')",
            (batch,),
        )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cj_health.cli", *argv],
        env={**os.environ, "CJ_DATABASE_URL": database.url},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert proc.returncode == EXIT_BROKEN_PIPE
    assert err == ""
