"""The GX file data context in great_expectations/: the checked-in files, and the copy
`cj-health check` runs.

The files are generated through GX's API from the rules dbt compiles (cj_health.gx.generate,
`make gx`); `write()` brings a folder in line with them and `differences()` lists what
differs, for the test that fails while the checked-in files are not what generation
produces. `cj-health check` only reads these files and writes under
great_expectations/uncommitted/; an installed copy of the tool runs a working copy in its
state folder instead (`runtime_root`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from cj_health.errors import CjHealthError
from cj_health.paths import is_packaged_project, project_dir, state_dir

CONTEXT_DIR = "great_expectations"
DATASOURCE = "cj_postgres"
BATCH_DEFINITION = "all_rows"
CHECKPOINT = "cj_health"
DATA_DOCS_SITE = "local_site"
DATA_DOCS_DIR = "uncommitted/data_docs/local_site/"
INDEX_COLUMN = "cj_batch_id"


def default_root() -> Path:
    return project_dir() / CONTEXT_DIR


def runtime_root() -> Path:
    """The context `cj-health check` runs: the project's own (it writes only under its
    git-ignored uncommitted/), or for an installed copy, whose package folder is not the
    tool's to write, `<state folder>/great_expectations`, brought in line with the installed
    files first (its uncommitted/, the Data Docs, is kept)."""
    root = default_root()
    if not is_packaged_project():
        return root
    files = {
        path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
    copy = state_dir() / CONTEXT_DIR
    write(copy, files)
    return copy


GENERATED_DIRS = ("expectations", "validation_definitions", "checkpoints")


def asset_tables(root: Path) -> list[str]:
    """The relations the context's data assets name (its great_expectations.yml)."""
    path = root / "great_expectations.yml"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CjHealthError(f"cannot read the GX context {path}: {exc}".splitlines()[0]) from None
    datasource = (config.get("fluent_datasources") or {}).get(DATASOURCE) or {}
    assets = datasource.get("assets") or {}
    if not assets:
        raise CjHealthError(f"{path} defines no data assets for data source {DATASOURCE}")
    return [str(asset.get("table_name") or name) for name, asset in assets.items()]


def differences(root: Path, files: dict[str, str]) -> list[str]:
    """Files of `root` that differ from `files`, are missing, or are generated-dir leftovers."""
    changed = [
        name
        for name, text in files.items()
        if not (root / name).is_file() or (root / name).read_text(encoding="utf-8") != text
    ]
    for directory in GENERATED_DIRS:
        for path in sorted((root / directory).glob("*.json")):
            name = f"{directory}/{path.name}"
            if name not in files:
                changed.append(name)
    return changed


def write(root: Path, files: dict[str, str]) -> list[str]:
    """Bring `root` in line with `files`; return what changed. Each file is replaced
    atomically (two checks running at once never see half a file)."""
    changed = differences(root, files)
    for name in changed:
        path = root / name
        try:
            if name not in files:
                path.unlink(missing_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(
                dir=path.parent, prefix=".tmp-", suffix=path.suffix
            )
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(files[name])
            os.replace(temporary, path)
        except OSError as exc:
            raise CjHealthError(
                f"cannot update the GX context file {path} ({exc.strerror})"
            ) from None
    return changed
