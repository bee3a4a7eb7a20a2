"""The docs: the site builds with ``--strict`` and matches the code; the README stays short and true."""

from __future__ import annotations

import argparse
import html
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.errors import ExitCode
from tests.conftest import made_once
from tests.harness.runs import REPO

README = REPO / "README.md"
BUILD_TIMEOUT = 600  # seconds: the build runs the harness once and opens its report in Chromium
SCREENSHOTS = ("verdict.png", "timeline.png", "causes.png")
QUICK_START = (
    "python3 -m pip install -e . && harness run\n"
    "tools/install-chromium && tools/install-postgresql && "
    "python3 -m pip install -e '.[test]' && python3 -m pytest -n auto\n"
)


def build(site_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", **env},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def _build_site(site_dir: Path) -> None:
    completed = build(site_dir)
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once per test run: its tests read it on whichever xdist worker runs them."""
    return made_once(tmp_path_factory, "site", _build_site)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def text_of(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


# --- the site, built -----------------------------------------------------------------------------


@pytest.mark.e2e
def test_the_cli_page_shows_every_subcommand_with_every_option(site: Path) -> None:
    page = (site / "cli" / "index.html").read_text(encoding="utf-8")

    assert set(subcommands()) >= {"run", "sweep", "recover", "report", "matrix", "list", "config", "init"}
    for name, parser in subcommands().items():
        start = page.index(f'<h2 id="harness-{name}"')
        section = text_of(page[start : page.find("<h2", start + 1)])
        assert f"usage: harness {name}" in section, name
        for action in parser._actions:
            for option in action.option_strings:
                assert option in section, f"harness {name}: {option}"
    run = text_of(page[page.index('<h2 id="harness-run"') :])
    assert "--confidence" in run
    assert "--url" in run


@pytest.mark.e2e
def test_the_exit_code_page_has_every_code_with_its_meaning(site: Path) -> None:
    page = (site / "exit-codes" / "index.html").read_text(encoding="utf-8")
    table = re.search(r"<table>.*?</table>", page, re.DOTALL)
    assert table is not None
    rows = [
        [text_of(cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]
        for row in re.findall(r"<tr>(.*?)</tr>", table.group(0), re.DOTALL)
    ]
    shown = {int(cells[0]): cells[-1] for cells in rows if cells}

    assert shown == {code.value: code.meaning for code in ExitCode}


@pytest.mark.e2e
def test_the_report_page_shows_screenshots_of_a_real_report(site: Path) -> None:
    page = (site / "report" / "index.html").read_text(encoding="utf-8")
    for name in SCREENSHOTS:
        png = (site / "assets" / "screens" / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), name
        width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk comes first
        assert width >= 400 and height >= 100, (name, width, height)
        assert len(png) > 10_000, name  # not a blank box
        assert f"assets/screens/{name}" in page
    assert not (REPO / "docs" / "assets" / "screens").exists()  # made for the build, never written into docs/


@pytest.mark.e2e
def test_the_site_fetches_nothing_from_elsewhere(site: Path) -> None:
    for page in site.rglob("*.html"):
        assert "fonts.googleapis.com" not in page.read_text(encoding="utf-8"), page


def test_without_chromium_the_build_fails_and_says_so(tmp_path: Path) -> None:
    completed = build(tmp_path / "site", HARNESS_CHROMIUM=str(tmp_path / "no-chromium"))

    assert completed.returncode != 0
    assert f"no Chromium at {tmp_path / 'no-chromium'}" in completed.stderr
    assert "tools/install-chromium" in completed.stderr


# --- the README ------------------------------------------------------------------------------------


def test_the_readme_is_at_most_150_lines() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 150


def test_the_quick_start_block_is_the_two_lines_ci_runs() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Quick start\n", 1)[1]
    block = re.search(r"^```\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert block is not None
    assert block.group(1) == QUICK_START


def test_the_readmes_exit_code_table_lists_exactly_the_exit_codes() -> None:
    section = README.read_text(encoding="utf-8").split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header, rule, *body = rows
    assert header.replace(" ", "").startswith("|code|")
    assert set(rule) <= set("|-: ")
    codes = [int(row.split("|")[1]) for row in body]

    assert sorted(codes) == sorted(code.value for code in ExitCode)


def test_every_relative_link_in_the_readme_points_to_a_file() -> None:
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    relative = [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:|#", t)]

    assert relative, "the README links to no file"
    missing = [target for target in relative if not (REPO / target).is_file()]
    assert missing == []


def test_every_docs_page_is_in_the_navigation_and_every_page_there_exists() -> None:
    nav = set(re.findall(r":\s+(\S+\.md)\s*$", (REPO / "mkdocs.yml").read_text(encoding="utf-8"), re.MULTILINE))
    pages = {path.name for path in (REPO / "docs").glob("*.md")}

    assert nav == pages
