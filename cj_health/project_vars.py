"""The dbt vars of dbt_project.yml that the Python side also needs (one definition)."""

from __future__ import annotations

from typing import Any

import yaml

from cj_health.paths import project_dir


def project_var(name: str, default: Any = None) -> Any:
    """The value of dbt var `name` as dbt_project.yml sets it (not `--vars` of one run)."""
    project = yaml.safe_load((project_dir() / "dbt_project.yml").read_text(encoding="utf-8"))
    return (project.get("vars") or {}).get(name, default)


def retention_days(name: str) -> int:
    """A retention var (`history_retention_days`, ...) as a positive number of days."""
    value = int(project_var(name))
    if value < 1:
        raise ValueError(f"dbt var {name} must be at least 1 day, not {value}")
    return value
