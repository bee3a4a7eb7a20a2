"""What mkdocs generates at build time (mkdocs.yml: ``hooks``), so that none of it is written by hand.

- The CLI reference: ``<!-- cli-reference -->`` in a page becomes the ``--help`` of
  ``harness`` and of each of its subcommands, from ``harness.cli.build_parser()``.
- The exit-code table: ``<!-- exit-codes -->`` becomes a table of ``harness.errors.ExitCode``,
  each code with its ``.meaning``.
- The settings table: ``<!-- settings -->`` becomes a table of every run setting of
  ``harness.settings``: its key, option, variable, plugin option, default and accepted values.
- The screenshots of the report: a real ``harness run`` (``burst``, one trial, the unpatched
  and patched builds, servers on 127.0.0.1 stopped by the harness) into a temporary folder,
  its ``report.html`` opened in Chromium through Playwright with the settings of the
  project's browser tests, and parts of it added to the site as ``assets/screens/*.png``.
  Nothing is written into ``docs/``. Without Chromium the build fails and says so.

``python docs/hooks.py`` takes the same run's screenshot for the README, ``docs/assets/report.png``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI_MARKER = "<!-- cli-reference -->"
EXIT_CODES_MARKER = "<!-- exit-codes -->"
SETTINGS_MARKER = "<!-- settings -->"
RUN_TIMEOUT = 180  # seconds for the whole run; it takes a few on an idle machine
HELP_WIDTH = "80"  # columns argparse wraps --help to, whatever the terminal building the site
# The pages show parts of the report at about the width of their text: a narrow window, at twice the pixels.
SCREEN_VIEWPORT = {"width": 960, "height": 900}
SCREEN_SCALE = 2
README_VIEWPORT = {"width": 1400, "height": 900}  # the README's: the top of the report as a reader first sees it
README_SCREENSHOT = REPO / "docs" / "assets" / "report.png"

# The parts of the report the pages show: (file in the site, CSS selectors whose union is taken).
SCREENS = {
    "assets/screens/verdict.png": ("#verdict", "section.cards"),
    "assets/screens/timeline.png": ('details.trial[data-trial="1"]',),
    "assets/screens/causes.png": ("#causes",),
}


class DocsBuildError(Exception):
    """The docs cannot be built here; the message says why and what to do."""


# --- the CLI reference and the exit codes -----------------------------------------------------


@contextmanager
def _help_width() -> Iterator[None]:
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser by name, in the order they were added (argparse has no public way to them)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise DocsBuildError(f"{parser.prog}'s parser has no subcommands")


def cli_reference() -> str:
    """Markdown: ``harness --help``, then a section per subcommand with its ``--help``."""
    from harness.cli import build_parser

    parser = build_parser()
    with _help_width():
        parts = ["## harness", "", "```", "$ harness --help", parser.format_help().rstrip(), "```"]
        for name, subparser in subcommands(parser).items():
            parts += ["", f"## harness {name}", "", "```", f"$ harness {name} --help", subparser.format_help().rstrip()]
            parts += ["```"]
    return "\n".join(parts) + "\n"


def exit_code_table() -> str:
    """Markdown: a row per ``ExitCode``, its value, name and meaning."""
    from harness.errors import ExitCode

    rows = ["| code | name | meaning |", "|---|---|---|"]
    for code in ExitCode:
        meaning = code.meaning.replace("|", "\\|")  # a bar would end the cell
        rows.append(f"| {code.value} | `{code.name}` | {meaning} |")
    return "\n".join(rows) + "\n"


def settings_table() -> str:
    """Markdown: a row per run setting, as :mod:`harness.settings` declares it."""
    from harness.settings import describe_default, option, plugin_option, specs, variable

    rows = [
        "| key | option | variable | pytest | built-in | accepts |",
        "|---|---|---|---|---|---|",
    ]
    for name, spec in specs().items():
        plugin = f"`{plugin_option(name)}`" if spec.plugin else "-"
        cells = [f"`{name}`", f"`{option(name)}`", f"`{variable(name)}`", plugin, describe_default(name)]
        rows.append("| " + " | ".join([*cells, spec.read.accepts]).replace("\n", " ") + " |")
    return "\n".join(rows) + "\n"


# --- the screenshots ----------------------------------------------------------------------------


def _run_report(out: Path) -> Path:
    """A real run of burst, one trial, unpatched and patched; the path of its report.html."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARNESS_")}
    command = [sys.executable, "-m", "harness", "run", "--scenario", "burst", "--trials", "1"]
    command += ["--variant", "unpatched", "--variant", "patched", "--out", str(out)]
    # From an empty folder: the built-in builds, whatever harness.toml the current folder has.
    workdir = out / "cwd"
    workdir.mkdir()
    try:
        completed = subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise DocsBuildError(
            f"the run for the report's screenshots took over {RUN_TIMEOUT} s: {' '.join(command)}"
        ) from exc
    if completed.returncode != 0:
        raise DocsBuildError(
            f"the run for the report's screenshots exited {completed.returncode}, not 0: {' '.join(command)}\n"
            + completed.stdout[-2000:]
            + completed.stderr[-2000:]
        )
    reports = sorted(out.glob("*-burst/report.html"))
    if len(reports) != 1:
        raise DocsBuildError(f"the run for the screenshots left {len(reports)} reports in {out}, not one")
    return reports[0]


def _browser_settings() -> tuple[str, list[str]]:
    """Chromium's path and flags, as the project's browser tests launch it."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from tests.reports.test_browser import CHROMIUM, FLAGS
    except ImportError as exc:
        raise DocsBuildError(
            f"Chromium's settings come from tests/reports/test_browser.py, which could not be imported ({exc}): "
            "python3 -m pip install -e '.[test]'"
        ) from exc
    if not shutil.which(CHROMIUM):
        raise DocsBuildError(
            f"no Chromium at {CHROMIUM}: the docs show screenshots of a real report, taken at build time. "
            "Run tools/install-chromium (Debian's chromium package), or point HARNESS_CHROMIUM at a Chromium binary."
        )
    return CHROMIUM, list(FLAGS)


def screenshots(
    report: Path, screens: dict[str, tuple[str, ...]], *, viewport: dict[str, int], scale: int = 1
) -> dict[str, bytes]:
    """PNGs of parts of ``report``: for each name, the box around its selectors' elements (none: the window)."""
    chromium, flags = _browser_settings()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise DocsBuildError("Playwright is not installed: python3 -m pip install -e '.[docs]'") from exc

    shots: dict[str, bytes] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=flags)
        try:
            page = browser.new_page(viewport=viewport, device_scale_factor=scale)
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            for name, selectors in screens.items():
                shots[name] = _shot(page, selectors) if selectors else page.screenshot()
        finally:
            browser.close()
    return shots


def _shot(page: Any, selectors: tuple[str, ...]) -> bytes:
    boxes = []
    for selector in selectors:
        element = page.locator(selector).first
        if element.count() == 0:
            raise DocsBuildError(f"the report has no {selector!r}: the screenshots in docs/hooks.py need updating")
        element.scroll_into_view_if_needed()
        boxes.append(element.bounding_box())
    scroll = page.evaluate("[window.scrollX, window.scrollY]")
    left = min(box["x"] for box in boxes) + scroll[0] - 8
    top = min(box["y"] for box in boxes) + scroll[1] - 8
    right = max(box["x"] + box["width"] for box in boxes) + scroll[0] + 8
    bottom = max(box["y"] + box["height"] for box in boxes) + scroll[1] + 8
    clip = {"x": max(left, 0), "y": max(top, 0), "width": right - max(left, 0), "height": bottom - max(top, 0)}
    return bytes(page.screenshot(clip=clip, full_page=True))


def report_screenshots(
    screens: dict[str, tuple[str, ...]], *, viewport: dict[str, int], scale: int = 1
) -> dict[str, bytes]:
    """Screenshots of the report of a real run, made for the purpose in a temporary folder."""
    _browser_settings()  # before the run: no Chromium, no point in running
    with tempfile.TemporaryDirectory(prefix="harness-docs-") as out:
        return screenshots(_run_report(Path(out)), screens, viewport=viewport, scale=scale)


# --- mkdocs's events ------------------------------------------------------------------------------


def on_files(files: Any, config: Any, **kwargs: Any) -> Any:
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File

    try:
        shots = report_screenshots(SCREENS, viewport=SCREEN_VIEWPORT, scale=SCREEN_SCALE)
    except DocsBuildError as exc:
        raise PluginError(f"docs/hooks.py: {exc}") from exc
    for name, content in shots.items():
        files.append(File.generated(config, name, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if EXIT_CODES_MARKER in markdown:
        markdown = markdown.replace(EXIT_CODES_MARKER, exit_code_table())
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_table())
    return markdown


if __name__ == "__main__":
    # The README's one screenshot: the top of a real run's report, as a reader first sees it.
    try:
        [png] = report_screenshots({"report.png": ()}, viewport=README_VIEWPORT).values()
    except DocsBuildError as exc:
        sys.exit(f"docs/hooks.py: {exc}")
    README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    README_SCREENSHOT.write_bytes(png)
    print(f"wrote {README_SCREENSHOT.relative_to(REPO)} ({len(png)} bytes)")
