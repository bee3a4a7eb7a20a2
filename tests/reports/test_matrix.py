from __future__ import annotations

import re
from pathlib import Path

from harness.matrix import build_matrix
from harness.reports import write_matrix
from tests.harness.factories import stack_run


def test_the_matrix_page_shows_each_cell_with_its_rate_verdict_flags_and_report(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy" / "20261121-tutorial-tabs" / "results.json"
    current = tmp_path / "current" / "20261121-tutorial-tabs" / "results.json"
    matrix = build_matrix(
        [
            (legacy, stack_run("legacy", failed=10)),
            (current, stack_run("current", failed=1)),
            (tmp_path / "elsewhere" / "results.json", stack_run("current", failed=0, scenario="burst")),
        ]
    )

    html = write_matrix(matrix, tmp_path / "matrix.html").read_text()

    assert re.findall(r"<th>(\w+)</th>", html)[2:4] == ["current", "legacy"]
    assert "<tr><th>python</th><td>3.11.7</td><td>3.11.7</td></tr>" in html  # the stacks, as their runs recorded
    cells = re.findall(r'<td data-stack="(\w+)"( data-kind="(\w+)")?( data-weakened="(\w+)")?', html)
    assert [(stack, kind, weakened) for stack, _, kind, _, weakened in cells] == [
        ("current", "silent", ""),  # burst, unpatched
        ("legacy", "", ""),  # burst was not run on legacy
        ("current", "met", ""),  # burst, patched
        ("legacy", "", ""),
        ("current", "met", "legacy"),  # tutorial-tabs, unpatched: 1 of 10 against 10 of 10
        ("legacy", "met", ""),
        ("current", "met", ""),
        ("legacy", "met", ""),
    ]
    assert '<span class="kind silent">silent reproducer</span>' in html
    assert "1 of 10 trials failed: 10% (2%-40%)" in html
    assert '<a href="current/20261121-tutorial-tabs/report.html">report</a>' in html
    assert '<a href="elsewhere/report.html">report</a>' in html
    assert '<div class="banner silent" id="verdict">no regression and no harness error; ' in html
    assert "flagged: 1 silent reproducer, 1 weakened reproducer<br>" in html


def test_text_from_results_files_is_escaped_on_the_matrix_page(tmp_path: Path) -> None:
    matrix = build_matrix([(tmp_path / "results.json", stack_run("<script>alert(1)</script>", failed=3))])
    html = write_matrix(matrix, tmp_path / "matrix.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
