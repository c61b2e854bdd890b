"""Where the project's files are: the dbt project, GX context, and local state."""

from __future__ import annotations

import os
from pathlib import Path


def project_dir() -> Path:
    """The repository root, which holds dbt_project.yml (override: CJ_HEALTH_PROJECT_DIR)."""
    override = os.environ.get("CJ_HEALTH_PROJECT_DIR")
    if override:
        return Path(override).resolve()
    return Path(__file__).resolve().parents[1]


def state_dir() -> Path:
    """Local state: the embedded server's data, its start lock, run artefacts. Default
    `.cj-health/` in the project (git-ignored); override: CJ_HEALTH_STATE_DIR."""
    override = os.environ.get("CJ_HEALTH_STATE_DIR", "").strip()
    if override:
        return Path(override).resolve()
    return project_dir() / ".cj-health"
