"""Build hook: a wheel also carries what `cj-health` reads at run time (the dbt project, the GX
context, the Grafana files, the docs: `cj_health.paths.PROJECT_FILES`), copied from the
repository root into `cj_health/project/` as package data, so an installed `cj-health build`
and `cj-health check` work without a checkout. An editable install (`make install`) reads the
checkout itself and gets no copy. Everything else is configured in pyproject.toml.
"""

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# Never shipped: GX's local output and tool caches.
IGNORED = shutil.ignore_patterns("uncommitted", "__pycache__", "*.pyc", ".user.yml")


def project_files() -> tuple[str, ...]:
    """PROJECT_FILES, read from cj_health/paths.py itself (one definition; the package is not
    importable while it is being built)."""
    spec = importlib.util.spec_from_file_location("cj_health_paths", ROOT / "cj_health" / "paths.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PROJECT_FILES


class BuildPyWithProject(build_py):
    """build_py, then the project files into <build>/cj_health/project/."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "cj_health" / "project"
        for name in project_files():
            source, destination = ROOT / name, target / name
            if source.is_dir():
                shutil.copytree(source, destination, ignore=IGNORED, dirs_exist_ok=True)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)


setup(cmdclass={"build_py": BuildPyWithProject})
