"""The three-role deployment, run as docs/runbook.md ("Deploy with three roles") says.

The runbook's blocks are read from the runbook itself and run in order, each as the role its
first line names (`-- as cj_owner`, `# as cj_monitor`, `-- as an administrator`), with the
runbook's names replaced by this run's: roles are per server, so each run makes its own,
with a random password, and drops them afterwards. SQL blocks run through psycopg, shell
lines through the installed `cj-health` with CJ_DATABASE_URL naming the role.

Before the runbook's steps, what production already has: the owner of the service tables
(owner of the database, which holds production's schema and one batch per production shape,
written as that owner) and the service's role with its usual privileges on the tables.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from production_shapes import load_production_shapes
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from cj_health.db import Database, connect
from cj_health.paths import project_dir

RUNBOOK = project_dir() / "docs" / "runbook.md"
SECTION = "## Deploy with three roles"
# The runbook's names, replaced by each run's own.
OWNER, SERVICE, MONITOR = "cj_owner", "cj_service", "cj_monitor"
RUNBOOK_DATABASE = "cj_assessment"
RUNBOOK_PASSWORD = "'<from your secret store>'"
ADMINISTRATOR = "an administrator"


@dataclass(frozen=True)
class Step:
    """One block of the runbook's section: who runs it, what kind, its text."""

    role: str  # OWNER, MONITOR or ADMINISTRATOR
    kind: str  # "sql" or "sh"
    text: str


def runbook_steps() -> list[Step]:
    text = RUNBOOK.read_text()
    section = text.split(SECTION + "\n", 1)[1].split("\n## ", 1)[0]
    steps = []
    for kind, body in re.findall(r"```(sql|sh)\n(.*?)```", section, re.S):
        first, rest = body.split("\n", 1)
        role = re.sub(r"^(--|#) as ", "", first).strip()
        steps.append(Step(role, kind, rest))
    return steps


@dataclass
class Deployment:
    """A database deployed with three roles on the server of `admin`."""

    admin: Database
    dbname: str
    roles: dict[str, str]  # runbook name -> this run's role
    password: str
    # each shell line run, with its result
    commands: list[tuple[str, subprocess.CompletedProcess]] = field(default_factory=list)

    def as_role(self, role: str, dbname: str | None = None) -> Database:
        """The database (or `dbname`) as runbook role `role`."""
        url = pg_conninfo.make_conninfo(
            self.admin.url,
            dbname=dbname or self.dbname,
            user=self.roles[role],
            password=self.password,
        )
        return Database(url, self.admin.embedded)

    def substitute(self, text: str) -> str:
        for name, actual in self.roles.items():
            text = re.sub(rf"\b{name}\b", actual, text)
        text = re.sub(rf"\b{RUNBOOK_DATABASE}\b", self.dbname, text)
        return text.replace(RUNBOOK_PASSWORD, sql.quote(self.password))


def cli(database: Database, *args: str) -> subprocess.CompletedProcess:
    """`cj-health ARGS` as the installed command runs, CJ_DATABASE_URL naming `database`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CJ_")}
    env["CJ_DATABASE_URL"] = database.url
    command = Path(sys.executable).with_name("cj-health")
    return subprocess.run(
        [str(command), *args],
        env=env,
        cwd=project_dir(),
        capture_output=True,
        text=True,
        timeout=900,
    )


def _run_step(deployment: Deployment, step: Step) -> None:
    text = deployment.substitute(step.text)
    if step.role == ADMINISTRATOR:
        target = deployment.admin.with_dbname(deployment.dbname)
    else:
        target = deployment.as_role(step.role)
    if step.kind == "sql":
        with connect(target, autocommit=True) as conn:
            conn.execute(text)
        return
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert line.startswith("cj-health "), line
            deployment.commands.append((f"{step.role}: {line}", cli(target, *line.split()[1:])))


def _ensure_reader_role(admin: Database) -> None:
    lost_race = (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation)
    with connect(admin, autocommit=True) as conn, suppress(*lost_race):
        conn.execute("create role cj_health_reader nologin")


@contextmanager
def three_roles(admin: Database) -> Iterator[Deployment]:
    """Production's two roles and database (see the module docstring), the runbook's third
    role still to be made; dropped afterwards with every database made from it."""
    suffix = uuid.uuid4().hex[:8]
    deployment = Deployment(
        admin=admin,
        dbname=f"cjt_{suffix}",
        roles={name: f"{name}_{suffix}" for name in (OWNER, SERVICE, MONITOR)},
        password=secrets.token_hex(16),
    )
    _ensure_reader_role(admin)
    with connect(admin, autocommit=True) as conn:
        for name in (OWNER, SERVICE):
            conn.execute(
                sql.SQL("create role {} login password {}").format(
                    sql.Identifier(deployment.roles[name]), sql.Literal(deployment.password)
                )
            )
        conn.execute(
            sql.SQL("create database {} owner {}").format(
                sql.Identifier(deployment.dbname), sql.Identifier(deployment.roles[OWNER])
            )
        )
    try:
        owner = deployment.as_role(OWNER)
        load_production_shapes(owner)
        with connect(owner, autocommit=True) as conn:
            service = sql.Identifier(deployment.roles[SERVICE])
            conn.execute(sql.SQL("grant usage on schema public to {}").format(service))
            conn.execute(
                sql.SQL(
                    "grant select, insert, update, delete, truncate on all tables"
                    " in schema public to {}"
                ).format(service)
            )
            conn.execute(
                sql.SQL("grant usage on all sequences in schema public to {}").format(service)
            )
        yield deployment
    finally:
        with connect(admin, autocommit=True) as conn:
            rows = conn.execute(
                "select datname from pg_database where datname like %s",
                (f"cjt_{suffix}%",),
            ).fetchall()
            for (name,) in rows:
                conn.execute(
                    sql.SQL("drop database if exists {} with (force)").format(
                        sql.Identifier(name)
                    )
                )
            for role in deployment.roles.values():
                conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


def deploy_as_runbook_says(deployment: Deployment) -> None:
    """Every block of the runbook's section, in order; the commands' results are kept."""
    for step in runbook_steps():
        _run_step(deployment, step)


def copy_database(deployment: Deployment, name: str) -> str:
    """A copy of the deployed database, owned by the service tables' owner as the original
    (dropped with the deployment)."""
    copy = f"{deployment.dbname}_{name}"
    with connect(deployment.admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} owner {} template {}").format(
                sql.Identifier(copy),
                sql.Identifier(deployment.roles[OWNER]),
                sql.Identifier(deployment.dbname),
            )
        )
        # Privileges on a database are not copied with it.
        conn.execute(
            sql.SQL("grant connect, create, temporary on database {} to {}").format(
                sql.Identifier(copy), sql.Identifier(deployment.roles[MONITOR])
            )
        )
    return copy
