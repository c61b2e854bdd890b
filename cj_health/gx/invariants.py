"""The dbt project's data rules, read from its own files, as plain SQL for Great Expectations.

One rule, one definition:
- The invariants are the macros in `macros/invariants/*.sql`, listed with plain-words
  descriptions in `macros/invariants/_invariants.yml` (config.meta: the dbt test that runs
  the macro, the relation to pass for each argument, and the dbt var of each threshold). dbt's
  singular tests call these macros with `ref()`s; here the same macro text is rendered with
  plain jinja2, passing unqualified relation names (GX's connection puts the monitoring schema
  first on the search_path) and the thresholds' values from dbt_project.yml.
- The column rules of `cj_batch_health` are the `data_tests` of that model in
  `models/marts/_marts__models.yml` (unique, not_null, in_range, known_problem_codes); the
  problem codes themselves come from the `cj_problem_codes()` macro.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from cj_health.errors import CjHealthError

INVARIANTS_DIR = Path("macros") / "invariants"
INVARIANTS_LIST = INVARIANTS_DIR / "_invariants.yml"
MARTS_MODELS = Path("models") / "marts" / "_marts__models.yml"
PROBLEM_CODES_MACRO = Path("macros") / "problem_codes.sql"
DBT_PROJECT = Path("dbt_project.yml")
MACRO_PREFIX = "invariant_"
HEALTH_MODEL = "cj_batch_health"


@dataclass(frozen=True)
class Invariant:
    """One invariant macro and how dbt calls it."""

    name: str  # the macro name without its prefix, e.g. "anchor_flag_agrees"
    number: int | None  # its number among the nine data invariants (1-9), None for extra checks
    description: str
    dbt_test: str
    relations: dict[str, str]  # macro argument -> relation name, in the macro's order
    thresholds: dict[str, float] = field(default_factory=dict)  # argument -> value

    @property
    def macro(self) -> str:
        return MACRO_PREFIX + self.name

    @property
    def subject(self) -> str:
        """The relation the rule is about: its first relation argument. GX validates the
        rule on this relation's data asset."""
        return next(iter(self.relations.values()))


@dataclass(frozen=True)
class ColumnTest:
    """One dbt data test on a column of cj_batch_health."""

    column: str
    test: str  # unique, not_null, in_range, known_problem_codes
    arguments: dict[str, Any]


def _jinja_env() -> jinja2.Environment:
    return jinja2.Environment(extensions=["jinja2.ext.do"], undefined=jinja2.StrictUndefined)


def _read(project: Path, relative: Path) -> str:
    path = project / relative
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CjHealthError(f"{relative} is missing from the dbt project in {project}") from None


def _yaml(project: Path, relative: Path) -> dict:
    try:
        loaded = yaml.safe_load(_read(project, relative))
    except yaml.YAMLError as exc:
        raise CjHealthError(f"{relative} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(loaded, dict):
        raise CjHealthError(f"{relative} does not hold a YAML mapping")
    return loaded


def _plain(text: str) -> str:
    return " ".join(str(text or "").split())


def dbt_vars(project: Path) -> dict[str, Any]:
    return dict(_yaml(project, DBT_PROJECT).get("vars") or {})


def load_invariants(project: Path) -> list[Invariant]:
    """The invariants listed in macros/invariants/_invariants.yml, in their listed order."""
    listed = _yaml(project, INVARIANTS_LIST).get("macros") or []
    variables = dbt_vars(project)
    invariants = []
    for entry in listed:
        name = str(entry.get("name", ""))
        if not name.startswith(MACRO_PREFIX):
            continue
        meta = (entry.get("config") or {}).get("meta") or {}
        relations = meta.get("relations") or {}
        if not relations:
            raise CjHealthError(f"{INVARIANTS_LIST}: {name} lists no relations in config.meta")
        thresholds = {}
        for argument, spec in (meta.get("thresholds") or {}).items():
            value = variables.get(spec.get("var"), spec.get("default"))
            if isinstance(value, bool) or not isinstance(value, int | float):
                value = spec.get("default")
            thresholds[argument] = float(value)
        invariants.append(
            Invariant(
                name=name[len(MACRO_PREFIX) :],
                number=meta.get("invariant"),
                description=_plain(entry.get("description")),
                dbt_test=str(meta.get("dbt_test") or ""),
                relations={str(k): str(v) for k, v in relations.items()},
                thresholds=thresholds,
            )
        )
    if not invariants:
        raise CjHealthError(f"{INVARIANTS_LIST} lists no invariant macros")
    return invariants


def _macros(project: Path) -> dict[str, Any]:
    """Every invariant macro defined in macros/invariants/*.sql, by name. The files are read
    as one template, so an invariant can call the helper macros beside it (e.g.
    not_acknowledged), as in dbt, where every macro is global."""
    paths = sorted((project / INVARIANTS_DIR).glob("*.sql"))
    for path in paths:  # one file at a time first: an error names its file
        try:
            _jinja_env().parse(path.read_text(encoding="utf-8"))
        except jinja2.TemplateError as exc:
            raise CjHealthError(f"{path.relative_to(project)}: {exc}") from None
    text = "\n".join(path.read_text(encoding="utf-8") for path in paths)
    try:
        module = _jinja_env().from_string(text).module
    except jinja2.TemplateError as exc:
        raise CjHealthError(f"{INVARIANTS_DIR}/: {exc}") from None
    return {name: getattr(module, name) for name in dir(module) if name.startswith(MACRO_PREFIX)}


def render_invariant(
    project: Path, invariant: Invariant, relations: dict[str, str] | None = None
) -> str:
    """The invariant's failing-rows SQL, with `relations` (default: the listed relation
    names) and the thresholds from dbt_project.yml."""
    macro = _macros(project).get(invariant.macro)
    if macro is None:
        raise CjHealthError(
            f"{INVARIANTS_LIST} lists {invariant.macro}, but no file in {INVARIANTS_DIR}/ "
            "defines it"
        )
    arguments: dict[str, Any] = {**invariant.relations, **(relations or {})}
    arguments.update(invariant.thresholds)
    try:
        rendered = str(macro(**arguments))
    except jinja2.TemplateError as exc:
        raise CjHealthError(f"rendering {invariant.macro}: {exc}") from None
    return _tidy(rendered)


def _tidy(rendered: str) -> str:
    """Rendered SQL without the macro's indentation and trailing blanks."""
    text = textwrap.dedent(rendered.strip("\n"))
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def problem_code_entries(project: Path) -> list[dict[str, Any]]:
    """What `cj_problem_codes()` (macros/problem_codes.sql) returns: the problem codes, worst
    first, each a mapping with `code`, `severity`, `since` and `summary`."""
    captured: list[Any] = []

    def capture(value: Any) -> str:  # dbt's `return()`: hand the value back to the caller
        captured.append(value)
        return ""

    env = _jinja_env()
    env.globals["return"] = capture
    module = env.from_string(_read(project, PROBLEM_CODES_MACRO)).module
    module.cj_problem_codes()
    if not captured or not isinstance(captured[0], list):
        raise CjHealthError(f"{PROBLEM_CODES_MACRO}: cj_problem_codes() returned no list")
    return list(captured[0])


def problem_codes(project: Path) -> list[str]:
    return [str(problem["code"]) for problem in problem_code_entries(project)]


def render_generic_test(project: Path, test: ColumnTest, model: str) -> str:
    """The failing-rows SQL of one of the project's own generic tests (`{% test name(...) %}`
    in macros/), rendered with plain jinja2 the way dbt renders it: `model` and `column_name`
    plus the test's arguments."""
    opening = re.compile(r"\{%-?\s*test\s+" + re.escape(test.test) + r"\s*\(")
    for path in sorted((project / "macros").rglob("*.sql")):
        text = path.read_text(encoding="utf-8")
        if not opening.search(text):
            continue
        as_macros = re.sub(r"\{%(-?)\s*test\s+(\w+)", r"{%\1 macro test_\2", text)
        as_macros = re.sub(r"\{%(-?)\s*endtest\s*(-?)%\}", r"{%\1 endmacro \2%}", as_macros)
        env = _jinja_env()
        env.globals["cj_problem_codes"] = lambda: problem_code_entries(project)
        try:
            macro = getattr(env.from_string(as_macros).module, "test_" + test.test)
            rendered = macro(model=model, column_name=test.column, **test.arguments)
        except jinja2.TemplateError as exc:
            raise CjHealthError(f"rendering test {test.test} ({path.name}): {exc}") from None
        return _tidy(str(rendered))
    raise CjHealthError(f"no file in macros/ defines the generic test {test.test!r}")


def health_column_tests(project: Path) -> list[ColumnTest]:
    """The data tests on cj_batch_health's columns, from models/marts/_marts__models.yml."""
    models = _yaml(project, MARTS_MODELS).get("models") or []
    model = next((m for m in models if m.get("name") == HEALTH_MODEL), None)
    if model is None:
        raise CjHealthError(f"{MARTS_MODELS} does not describe {HEALTH_MODEL}")
    tests = []
    for column in model.get("columns") or []:
        for test in column.get("data_tests") or []:
            if isinstance(test, str):
                tests.append(ColumnTest(column["name"], test, {}))
            else:
                (name, config), *_ = test.items()
                arguments = (config or {}).get("arguments") or {}
                tests.append(ColumnTest(column["name"], name, dict(arguments)))
    return tests


_ENUM = re.compile(r"create\s+type\s+(\w+)\s+as\s+enum\s*\(([^)]*)\)", re.IGNORECASE)


def schema_enums(project: Path) -> dict[str, list[str]]:
    """The enum types of the CJ service schema (cj_health/migrations/*.sql): name -> values."""
    enums: dict[str, list[str]] = {}
    for path in sorted((project / "cj_health" / "migrations").glob("*.sql")):
        for name, body in _ENUM.findall(path.read_text(encoding="utf-8")):
            enums[name] = re.findall(r"'([^']*)'", body)
    return enums
