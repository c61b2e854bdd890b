"""Where the project's files are: the dbt project, the GX context, the Grafana files, and local
state.

- `project_dir()`: CJ_HEALTH_PROJECT_DIR when set (a dbt project of your own, e.g. a checkout
  with local changes); else the checkout this package runs from (`make install`, an editable
  install); else the copy an installed wheel carries as package data, `cj_health/project/`
  (PROJECT_FILES, put there by setup.py).
- `state_dir()`: CJ_HEALTH_STATE_DIR when set; else `.cj-health/` in the project folder (a
  checkout, or CJ_HEALTH_PROJECT_DIR); else, for an installed copy, whose package folder is not
  the tool's to write, `$XDG_STATE_HOME/cj-health` (default `~/.local/state/cj-health`).
"""

from __future__ import annotations

import os
from pathlib import Path

# What cj-health reads at run time, relative to the project folder: the dbt project, the GX
# context, the Grafana provisioning (the bench reads its alert queries) and the docs the tool
# points to. An installed wheel carries exactly these (setup.py).
PROJECT_FILES = (
    "dbt_project.yml",
    "models",
    "macros",
    "seeds",
    "tests/dbt",
    "profiles",
    "great_expectations",
    "grafana",
    "docs",
)
PACKAGED_PROJECT = Path(__file__).resolve().parent / "project"
STATE_FOLDER = ".cj-health"


def project_dir() -> Path:
    """The folder holding dbt_project.yml and the other PROJECT_FILES (module docstring)."""
    override = os.environ.get("CJ_HEALTH_PROJECT_DIR", "").strip()
    if override:
        return Path(override).resolve()
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "dbt_project.yml").is_file():
        return checkout
    return PACKAGED_PROJECT


def is_packaged_project() -> bool:
    """Whether the project files are the installed wheel's copy (read-only for the tool)."""
    return project_dir() == PACKAGED_PROJECT


def state_dir() -> Path:
    """Local state: the embedded server's data, its start lock, run artefacts, the GX context's
    working copy of an installed tool (module docstring)."""
    override = os.environ.get("CJ_HEALTH_STATE_DIR", "").strip()
    if override:
        return Path(override).resolve()
    if not is_packaged_project():
        return project_dir() / STATE_FOLDER
    base = os.environ.get("XDG_STATE_HOME", "").strip() or str(Path.home() / ".local" / "state")
    return Path(base).resolve() / "cj-health"
