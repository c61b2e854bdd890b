"""The GX Data Docs that `cj-health check` writes render in a browser: headless Chromium
(Debian's `chromium` package; skipped where the machine has none) loads the validation page of
a failing rule and shows the rule, its failure and its count of failing rows, never essay text;
it paints a screenshot that is not blank; and the index links that page as failed.

The pages load their styles and table scripts from public CDNs (GX's own templates); here,
without internet, Chromium shows them unstyled, which is what the tests can rely on."""

from __future__ import annotations

import html
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import eng5_template

from cj_health.check import run_check
from cj_health.db import Database, connect
from cj_health.eng5.faults import break_batch
from cj_health.gx import context as gx_context
from cj_health.gx.run import RuleResult

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no headless Chromium here (Debian: apt-get install chromium)"
)


@pytest.fixture(scope="module")
def checked(
    admin_db: Database, tmp_path_factory
) -> Iterator[tuple[Path, RuleResult, list[str]]]:
    """A built database whose second batch lost its anchor flags, checked into a private copy
    of the GX context; yields (Data Docs index, the anchor-flag rule's result, that batch's
    essay texts)."""
    from cj_health.build import BUILD_ARGS
    from cj_health.dbt_runner import run_dbt

    with eng5_template(admin_db, (21, 22), tmp_path_factory.mktemp("runs")) as (name, ids):
        database = admin_db.with_dbname(name)
        models = run_dbt(database, BUILD_ARGS)
        assert models.ok, models.output[-2000:]
        broken = ids[1]
        break_batch(database, "anchor_flags_lost", broken)
        root = tmp_path_factory.mktemp("gx") / "great_expectations"
        shutil.copytree(gx_context.default_root(), root,
                        ignore=shutil.ignore_patterns("uncommitted"))  # fmt: skip
        report = run_check(database, context_root=root)
        [rule] = [rule for rule in report.rules if rule.rule == "anchor_flag_agrees"]
        assert not rule.success and rule.failing_batches == [broken]
        with connect(database) as conn:
            texts = [row[0] for row in conn.execute(
                "select assessment_input_text from cj_processed_essays where cj_batch_id = %s",
                (broken,),
            )]  # fmt: skip
        yield report.data_docs_path, rule, texts


def _chromium(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--allow-file-access-from-files", "--virtual-time-budget=5000", *arguments],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def _validation_page(index: Path, suite: str) -> Path:
    """The newest validation page of a suite."""
    pages = sorted((index.parent / "validations" / suite).rglob("*.html"),
                   key=lambda page: page.stat().st_mtime)  # fmt: skip
    assert pages, f"no validation page of suite {suite} under {index.parent}"
    return pages[-1]


def _visible_text(dom: str) -> str:
    """The text a reader sees: the rendered DOM without scripts, styles and tags."""
    dom = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", dom, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", " ", dom))


def test_the_validation_page_renders_the_failure_and_the_batch_id(checked) -> None:
    index, rule, texts = checked
    done = _chromium("--dump-dom", _validation_page(index, rule.suite).as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    shown = " ".join(_visible_text(dom).split())
    assert f"Expectation Suite: {rule.suite}" in shown
    assert "Status: Failed" in shown
    assert " ".join(rule.description.split())[:60] in shown
    # The observed value: the rule's failing rows (one per essay whose flag disagrees).
    assert re.search(rf"Failing rows: one per essay\. {rule.failing_rows}\b", shown)
    assert texts and not any(text in dom for text in texts)


def test_the_validation_page_paints_a_screenshot_that_is_not_blank(checked, tmp_path) -> None:
    index, rule, _ = checked
    shot = tmp_path / "validation.png"
    page = _validation_page(index, rule.suite)
    done = _chromium(f"--screenshot={shot}", "--window-size=1280,900", page.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    width, height, values = _png_summary(shot.read_bytes())
    assert (width, height) == (1280, 900)
    # A blank or error page is one or two colours; a validation page draws its text and tables.
    assert values >= 16


def test_the_index_links_the_newest_validation_of_the_failing_suite(checked) -> None:
    """The index lists every validation with its status (its table is drawn by scripts GX
    loads from public CDNs; the rows are in the page itself)."""
    index, rule, _ = checked
    page = _validation_page(index, rule.suite).relative_to(index.parent).as_posix()
    source = index.read_text(encoding="utf-8")
    assert page in source
    row = source[source.index(page):][:400]
    assert "'_validation_success_text': 'Failed'" in row


def _png_summary(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the image data) of an 8-bit PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    chunks, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            chunks.append(data[offset + 8:offset + 8 + length])
        offset += 12 + length
    pixels = zlib.decompress(b"".join(chunks))
    return width, height, len(set(pixels))
