"""HTML reports: one self-contained page per run or sweep, an index of the runs in a folder, a matrix of stacks.

Pages work offline and alone (inline CSS and SVG, one small inline script); every text
that comes from a server or a scenario file is escaped.
"""

from __future__ import annotations

from pathlib import Path

from harness.reports._index import INDEX_FILE, write_index
from harness.reports._matrix import write_matrix
from harness.reports._report import REPORT_FILE, render_report, write_report
from harness.reports._sweep import SWEEP_REPORT_FILE, publish_sweep, render_sweep_report, write_sweep_report
from harness.results import RunResult

__all__ = [
    "INDEX_FILE",
    "REPORT_FILE",
    "SWEEP_REPORT_FILE",
    "publish",
    "publish_sweep",
    "render_report",
    "render_sweep_report",
    "write_index",
    "write_matrix",
    "write_report",
    "write_sweep_report",
]


def publish(result: RunResult, results_path: Path) -> Path:
    """Write the run's report beside its results file, refresh the index of the folder above; return the report."""
    report = write_report(result, results_path.with_name(REPORT_FILE))
    write_index(results_path.parent.parent)
    return report
