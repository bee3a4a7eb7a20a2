"""The matrix page: rows scenario x variant, columns stacks, each cell a verdict with its rate."""

from __future__ import annotations

import os
from pathlib import Path

from harness.environment import PACKAGES
from harness.errors import ExitCode
from harness.matrix import Matrix, describe_matrix
from harness.reports._render import render, write_page
from harness.reports._report import REPORT_FILE
from harness.results import RESULTS_FILE
from harness.summary import format_rate

_BANNERS = {ExitCode.REGRESSION: "bad", ExitCode.HARNESS_ERROR: "error"}


def write_matrix(matrix: Matrix, path: Path) -> Path:
    """Render ``matrix`` to ``path`` (atomically); cells link to their runs' reports, relative to it."""
    html = render(
        "matrix.html.j2",
        title="scenarios x stacks",
        matrix=matrix,
        headline=describe_matrix(matrix),
        banner=_BANNERS.get(matrix.exit_code, "silent" if any(cell.flagged for cell in matrix.cells) else "ok"),
        format_rate=format_rate,
        link=lambda results: Path(os.path.relpath(results.with_name(REPORT_FILE), path.parent)).as_posix(),
        results_file=RESULTS_FILE,
        packages=("host", "cpus", "platform", "python", "stack", *PACKAGES),
    )
    return write_page(path, html)
