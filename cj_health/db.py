"""Which database the tooling talks to, and how to connect to it without leaking secrets.

`CJ_DATABASE_URL` (a libpq URL or conninfo string) names any PostgreSQL 15+ server. When it is
unset, the embedded server is started and its `cj_dev` database is used.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from cj_health import embedded
from cj_health.db_errors import remember_statement
from cj_health.errors import CjHealthError, DatabaseUnavailable
from cj_health.text import escape

DEFAULT_MONITORING_SCHEMA = "cj_monitoring"
DEFAULT_SOURCE_SCHEMA = "public"
CONNECT_TIMEOUT_SECONDS = 5
# A schema name the tooling accepts: a plain lowercase identifier, which needs no quoting in
# SQL, Jinja, a search_path option or a SQLAlchemy URL.
PLAIN_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# The libpq parameters other than host, port, user, password and dbname, by the environment
# variable libpq reads each from: dbt (psycopg2, on libpq too) gets them this way, since its
# profile names only those five.
LIBPQ_ENVIRONMENT = {
    "hostaddr": "PGHOSTADDR",
    "service": "PGSERVICE",
    "passfile": "PGPASSFILE",
    "options": "PGOPTIONS",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "sslcertmode": "PGSSLCERTMODE",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "requirepeer": "PGREQUIREPEER",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "channel_binding": "PGCHANNELBINDING",
    "require_auth": "PGREQUIREAUTH",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "client_encoding": "PGCLIENTENCODING",
}


@dataclass(frozen=True)
class Database:
    """A target database: its libpq URL (may hold a password: never print it) and origin."""

    url: str
    embedded: bool = False

    @property
    def params(self) -> dict[str, str]:
        return {k: str(v) for k, v in pg_conninfo.conninfo_to_dict(self.url).items()}

    @property
    def dbname(self) -> str:
        """The database libpq will ask for: the URL's, else PGDATABASE, else the user name.
        Only a guess until connected: cj_health.target verifies it with current_database()."""
        params = self.params
        user = params.get("user") or os.environ.get("PGUSER") or getpass.getuser()
        return params.get("dbname") or os.environ.get("PGDATABASE") or user

    @property
    def host(self) -> str:
        """The URL's host, else PGHOST's: exact once pinned (cj_health.target), a guess before."""
        return self.params.get("host") or os.environ.get("PGHOST") or "localhost"

    @property
    def port(self) -> str:
        return self.params.get("port") or os.environ.get("PGPORT") or "5432"

    @property
    def display(self) -> str:
        """Where this is, safe to print: host, port and database, never the password (any
        control character escaped: the database name is the server's)."""
        origin = "embedded " if self.embedded else ""
        return escape(f"{origin}{self.host}:{self.port}/{self.dbname}")

    def with_dbname(self, dbname: str) -> Database:
        return Database(pg_conninfo.make_conninfo(self.url, dbname=dbname), self.embedded)


def parse_url(url: str, *, embedded_server: bool = False) -> Database:
    if any(0xD800 <= ord(char) <= 0xDFFF for char in url):  # a non-UTF-8 byte in the variable
        raise DatabaseUnavailable("CJ_DATABASE_URL is not valid UTF-8")
    try:
        pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # libpq's message can quote the URL, password and all: say only what is wrong.
        raise DatabaseUnavailable(
            "CJ_DATABASE_URL is not a valid libpq URL (expected postgresql://user@host:port/dbname)"
        ) from None
    return Database(url, embedded=embedded_server)


def resolve_database(env: Mapping[str, str] | None = None) -> Database:
    """The database named by CJ_DATABASE_URL, else the embedded server's dev database."""
    env = os.environ if env is None else env
    url = env.get("CJ_DATABASE_URL", "").strip()
    if url:
        return parse_url(url)
    with embedded.start_lock():  # two first commands at once create cj_dev once
        server = Database(embedded.server_url("postgres"), embedded=True)
        ensure_database_exists(server, embedded.EMBEDDED_DATABASE)
    return server.with_dbname(embedded.EMBEDDED_DATABASE)


def configured_database(env: Mapping[str, str] | None = None) -> Database | None:
    """The target without starting anything: CJ_DATABASE_URL, else the embedded dev database
    when the embedded server is already running, else None."""
    env = os.environ if env is None else env
    url = env.get("CJ_DATABASE_URL", "").strip()
    if url:
        return parse_url(url)
    running = embedded.running_url(embedded.EMBEDDED_DATABASE)
    return Database(running, embedded=True) if running else None


def _redact(message: str, database: Database) -> str:
    password = database.params.get("password")
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    if password:
        first_line = first_line.replace(password, "***")
    return first_line


def session_conninfo(database: Database) -> str:
    """`database`'s conninfo with search_path set to the source schema, so that unqualified
    service-table names (the ENG5 runner, python_fix) mean CJ_SOURCE_SCHEMA's tables."""
    options = database.params.get("options", "")
    search_path = f"-c search_path={source_schema()}"
    return pg_conninfo.make_conninfo(
        database.url, options=f"{options} {search_path}".strip()
    )


# Connection parameters that connect() sets itself: the pinned target keeps the URL's own.
OWN_PARAMETERS = ("application_name", "connect_timeout")
# Defaults libpq reports as if they were set (conn.info.get_parameters()).
REPORTED_DEFAULTS = {"sslcertmode": "allow"}


def pinned_url(url: str, info: psycopg.ConnectionInfo) -> str:
    """The conninfo of what libpq actually used for a connection to `url` (`conn.info` after
    connecting): host (a unix socket's directory), port, database and user as connected, and
    every other parameter as libpq resolved it from the URL, the PG* variables and a PGSERVICE
    file. Every other client given it reaches the same server and database, whatever those
    variables or the file say later. An address (`hostaddr`) is pinned only when the URL or
    PGHOSTADDR gave one (libpq also reports the address a host name resolved to, which must not
    pin a name with several); the password only as the URL gave it (libpq never reports it:
    ~/.pgpass and PGPASSWORD resolve the same for the pinned values)."""
    given = {k: str(v) for k, v in pg_conninfo.conninfo_to_dict(url).items()}
    params = {
        key: value
        for key, value in info.get_parameters().items()
        if key not in (*OWN_PARAMETERS, "service", "options", "hostaddr")
        and REPORTED_DEFAULTS.get(key) != value
    }
    params.update({key: given[key] for key in (*OWN_PARAMETERS, "password") if given.get(key)})
    options = _options_without_search_path(info.get_parameters().get("options", ""))
    if options:
        params["options"] = options
    params.update(host=info.host, port=str(info.port), dbname=info.dbname, user=info.user)
    if info.hostaddr and (given.get("hostaddr") or os.environ.get("PGHOSTADDR")):
        params["hostaddr"] = info.hostaddr  # the one connected to, of a list
    return pg_conninfo.make_conninfo("", **params)


def _options_without_search_path(options: str) -> str:
    """`options` without the search_path session_conninfo appends to every connection."""
    suffix = f"-c search_path={source_schema()}"
    return options[: -len(suffix)].strip() if options.endswith(suffix) else options.strip()


class StatementCursor(psycopg.Cursor):
    """A cursor that leaves the failing statement on a database error, so that one mapping
    (cj_health.db_errors) can say which privilege it needed, for every command."""

    def execute(self, query, params=None, **kwargs):
        try:
            return super().execute(query, params, **kwargs)
        except psycopg.Error as exc:
            remember_statement(exc, query, self.connection)
            raise

    def executemany(self, query, params_seq, **kwargs):
        try:
            return super().executemany(query, params_seq, **kwargs)
        except psycopg.Error as exc:
            remember_statement(exc, query, self.connection)
            raise


def connect(database: Database, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a connection (search_path: the source schema), or raise DatabaseUnavailable with
    one redacted line."""
    try:
        return psycopg.connect(
            session_conninfo(database),
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name="cj-health",
            cursor_factory=StatementCursor,
        )
    except psycopg.OperationalError as exc:
        cause = _redact(str(exc), database)
        raise DatabaseUnavailable(f"cannot connect to {database.display}: {cause}") from None


def ensure_database_exists(server: Database, dbname: str) -> None:
    """Create `dbname` on the server of `server` when it is missing. Two commands starting at
    once may both find it missing: the loser's `create database` fails and is fine."""
    with connect(server, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if not exists:
            lost_race = (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation)
            with contextlib.suppress(*lost_race):
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))


def dbt_env(database: Database) -> dict[str, str]:
    """Environment variables that profiles/profiles.yml reads. The password is passed only to
    child processes, never printed (see `cj-health db env`). Give it a verified database
    (cj_health.target): `dbname` is then the one current_database() returned."""
    params = database.params
    return {
        "CJ_PGHOST": database.host,
        "CJ_PGPORT": database.port,
        "CJ_PGUSER": params.get("user") or os.environ.get("PGUSER") or getpass.getuser(),
        "CJ_PGPASSWORD": params.get("password", ""),
        "CJ_PGDATABASE": database.dbname,
        "CJ_MONITORING_SCHEMA": monitoring_schema(),
        "CJ_SOURCE_SCHEMA": source_schema(),
        **{LIBPQ_ENVIRONMENT[key]: value for key, value in params.items()
           if key in LIBPQ_ENVIRONMENT and value},
    }


def schema_setting(variable: str, default: str, env: Mapping[str, str] | None = None) -> str:
    """The schema named by environment variable `variable` (else `default`): a plain
    lowercase identifier, else CjHealthError (exit 2) naming the variable."""
    env = os.environ if env is None else env
    value = env.get(variable, "").strip() or default
    if not PLAIN_IDENTIFIER.fullmatch(value):
        raise CjHealthError(
            f"{variable} must be a plain lowercase identifier (letters, digits, _; "
            f"at most 63), got {value!r}"
        )
    return value


def monitoring_schema(env: Mapping[str, str] | None = None) -> str:
    return schema_setting("CJ_MONITORING_SCHEMA", DEFAULT_MONITORING_SCHEMA, env)


def source_schema(env: Mapping[str, str] | None = None) -> str:
    return schema_setting("CJ_SOURCE_SCHEMA", DEFAULT_SOURCE_SCHEMA, env)
