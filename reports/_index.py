"""The index page of an output folder: every run in it, newest first, with its verdict and report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import ResultsError
from harness.reports._render import render, write_page
from harness.reports._report import REPORT_FILE
from harness.results import RESULTS_FILE, RunResult, read_results

INDEX_FILE = "index.html"


@dataclass(frozen=True, kw_only=True)
class _Entry:
    folder: str
    result: RunResult | None
    problem: str | None
    has_report: bool


def write_index(out_dir: Path) -> Path:
    """(Re)write ``out_dir/index.html`` from the runs' results files found under ``out_dir``."""
    entries = [_entry(path) for path in out_dir.glob(f"*/{RESULTS_FILE}")]
    entries.sort(key=lambda e: (e.result.started_at if e.result else "", e.folder), reverse=True)
    html = render(
        "index.html.j2",
        title=f"harness runs in {out_dir}",
        entries=entries,
        report_file=REPORT_FILE,
        results_file=RESULTS_FILE,
    )
    return write_page(out_dir / INDEX_FILE, html)


def _entry(results: Path) -> _Entry:
    folder = results.parent
    try:
        result, problem = read_results(results, with_trials=False), None  # a long run's trials are not needed
    except ResultsError as exc:
        result, problem = None, exc.message
    return _Entry(folder=folder.name, result=result, problem=problem, has_report=(folder / REPORT_FILE).exists())
