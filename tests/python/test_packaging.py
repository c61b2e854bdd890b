"""A real install: the wheel built from this checkout, installed into a fresh virtual environment
outside it, works as the tool, with the dbt project and the GX context it carries.

The wheel is built (`pip wheel`, build isolation: the setuptools pyproject.toml asks for) from a
copy of the checkout, so the parallel passes of `make test` never share a build folder, and its
build output must hold no Python warning (setuptools' package-discovery warnings, above all).
The fresh environment gets the wheel and its dependencies from pip's configured index (no
`--system-site-packages`, nothing borrowed from the development environment): the test
installs what `pip install .` installs. From a folder outside the checkout it then runs
`cj-health --version`, `db where`, `build` and `check` against a test database, and checks that
nothing was written into the installed package (the tool's state goes to XDG_STATE_HOME).

Slow by nature (a venv and a dependency install, then dbt and GX): about a minute or two.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cj_health.db import Database
from cj_health.paths import PROJECT_FILES, project_dir

INSTALL_TIMEOUT = 1800  # seconds; a hang guard for a loaded machine, not a measurement
COMMAND_TIMEOUT = 600
# Left out of the copy the wheel is built from: local state, caches, build output.
NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", ".cj-health", "target", "logs", "build", "dist", "*.egg-info",
    "__pycache__", ".pytest_cache", ".ruff_cache", "uncommitted",
)  # fmt: skip
PYTHON_WARNING = re.compile(r"\b\w+Warning\b")


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """A fresh venv outside the checkout with the wheel installed; yields its folder."""
    home = Path(tempfile.mkdtemp(prefix="cj-health-wheel-"))
    try:
        source = home / "source"
        shutil.copytree(project_dir(), source, ignore=NOT_SOURCE)
        built = _pip("wheel", "--no-deps", "--wheel-dir", str(home / "dist"), str(source))
        assert built.returncode == 0, built.stdout + built.stderr
        warnings = PYTHON_WARNING.findall(built.stdout + built.stderr)
        assert not warnings, built.stdout + built.stderr
        [wheel] = (home / "dist").glob("cj_batch_health-*.whl")

        venv = home / "venv"
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(venv)],
            check=True, timeout=COMMAND_TIMEOUT,
        )  # fmt: skip
        install = _pip("--python", str(venv / "bin" / "python"), "install", str(wheel))
        assert install.returncode == 0, install.stdout + install.stderr
        assert not PYTHON_WARNING.findall(install.stdout + install.stderr), install.stderr
        yield venv
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _package_dir(venv: Path) -> Path:
    [package] = (venv / "lib").glob("python3*/site-packages/cj_health")
    return package


def _files(folder: Path) -> set[str]:
    return {
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def _run(venv: Path, cwd: Path, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "cj-health"), *argv], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )  # fmt: skip


def test_the_wheel_carries_every_subpackage_and_the_project_files(installed):
    package = _package_dir(installed)
    for subpackage in ("commands", "eng5", "gx", "bench", "migrations"):
        assert (package / subpackage).is_dir(), subpackage
    assert sorted(p.name for p in (package / "migrations").glob("*.sql"))
    for name in PROJECT_FILES:
        assert (package / "project" / name).exists(), name
    shipped = _files(package / "project" / "models")
    assert shipped == _files(project_dir() / "models")
    assert not (package / "project" / "great_expectations" / "uncommitted").exists()


def test_the_installed_tool_runs_outside_the_checkout(installed, cj_db: Database, tmp_path):
    """--version, db where, build and check from a folder that is no checkout: the tool finds
    its dbt project and GX context in the package, and writes nothing into it."""
    package = _package_dir(installed)
    before = _files(package)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CJ_HEALTH_PROJECT_DIR", "CJ_HEALTH_STATE_DIR", "PYTHONPATH", "VIRTUAL_ENV")
    }
    env.update(
        CJ_DATABASE_URL=cj_db.url,
        XDG_STATE_HOME=str(tmp_path / "state"),
        PATH=f"{installed / 'bin'}:{env.get('PATH', '')}",
    )

    version = _run(installed, outside, "--version", env=env)
    assert version.returncode == 0 and version.stdout.strip() == "cj-health 0.1.0", version

    where = _run(installed, outside, "db", "where", env=env)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().endswith(f"/{cj_db.dbname}")

    build = _run(installed, outside, "build", env=env)
    assert build.returncode == 0, build.stdout + build.stderr
    assert "models:" in build.stdout and "0 failed, 0 broken" in build.stdout

    check = _run(installed, outside, "check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "all rules hold" in check.stdout
    assert str(tmp_path / "state" / "cj-health" / "great_expectations") in check.stdout

    assert _files(package) == before, "the installed package was written to"
