"""The sweep's report rendered from hand-built sweeps: heat maps, the winner, an incomplete sweep, hostile text."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from harness.reports import REPORT_FILE, SWEEP_REPORT_FILE, publish_sweep, render_sweep_report
from harness.results import RESULTS_FILE, write_results
from tests.harness.factories import cell, make_result, make_sweep

GRID = (
    cell(1, 0.5, failed=0, cost=1),
    cell(1, 1.0, failed=1, cost=2),
    cell(10, 0.5, failed=10, cost=10),
    cell(10, 1.0, failed=10, cost=20),
    cell(10, 0.5, failed=50, trials=50, cost=10, stage="confirm"),
)


def _squares(html: str, variant: str) -> list[str]:
    figure = html.split(f'<figure class="heat" data-variant="{variant}">', 1)[1].split("</figure>", 1)[0]
    return re.findall(r'<td class="square[^"]*"[^>]*>.*?</td>', figure, flags=re.S)


def test_a_heat_map_per_variant_with_a_square_per_cell_and_the_winner_framed() -> None:
    html = render_sweep_report(make_sweep(GRID))
    unpatched, patched = _squares(html, "unpatched"), _squares(html, "patched")
    assert len(unpatched) == len(patched) == 4
    # Rows are in flight (1, 10), columns intervals (0.5, 1): the winner is 10 in flight every 0.5.
    assert [re.search(r">(\d+/\d+)<", s)[1] for s in unpatched] == ["0/10", "1/10", "10/10", "10/10"]
    assert [s.startswith('<td class="square winner"') for s in unpatched] == [False, False, True, False]
    assert "at least 74.1% (exact, 95%)" in unpatched[2]  # ten of ten trials: the rate's exact lower bound
    assert 'href="cells/grid-10-0.5/report.html"' in unpatched[2]
    assert all(">0/10<" in s for s in patched)
    assert 'id="incomplete"' not in html
    assert "Cheapest detecting schedule: 10 in flight every 0.5 tutorial-seconds" in html
    assert "<td>confirm</td>" in html and "50/50: 100% (93%-100%)" in html


def test_the_squares_are_coloured_by_the_failure_rate() -> None:
    unpatched = _squares(render_sweep_report(make_sweep(GRID)), "unpatched")
    lightness = [int(re.search(r"hsl\(0, 75%, (\d+)%\)", s)[1]) for s in unpatched]
    assert lightness[0] == 100 and lightness[2] == lightness[3] == 45
    assert lightness[0] > lightness[1] > lightness[2]


def test_an_incomplete_sweep_says_so_and_shows_cells_not_run() -> None:
    html = render_sweep_report(make_sweep(GRID[:3], complete=False))
    assert 'id="incomplete"' in html and "it was cut short" in html
    assert 'title="not run"' in html
    assert "No cell detected" not in html


def test_no_winner_is_said_in_the_banner() -> None:
    html = render_sweep_report(make_sweep(GRID[:2]))
    assert re.search(r'<div class="banner silent" id="verdict">\s*No cell detected', html)


def test_text_from_the_environment_is_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    html = render_sweep_report(replace(make_sweep(GRID), environment={"python": hostile}))
    assert hostile not in html and "&lt;script&gt;" in html


def test_publish_writes_the_cells_reports_and_the_sweep_report_beside_its_results(tmp_path: Path) -> None:
    sweep = make_sweep(GRID[:3])
    for measured in sweep.cells:
        (tmp_path / measured.run_dir).mkdir(parents=True)
        write_results(make_result(), tmp_path / measured.run_dir / RESULTS_FILE)
    report = publish_sweep(sweep, tmp_path / "sweep.json")
    assert report == tmp_path / SWEEP_REPORT_FILE and report.is_file()
    assert all((tmp_path / measured.run_dir / REPORT_FILE).is_file() for measured in sweep.cells)
    assert "<link" not in report.read_text() and "src=" not in report.read_text()  # nothing fetched
