"""A sweep's report: one heat map per variant (failure rate per cell), the winner, every cell's run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import ExitCode
from harness.reports._render import render, write_page
from harness.reports._report import REPORT_FILE, write_report
from harness.results import RESULTS_FILE, CellResult, SweepResult, VariantSummary, read_results
from harness.summary import DATABASE_NAMES, describe_cell, detection_lower_bound, format_rate
from harness.variant import Database

SWEEP_REPORT_FILE = "sweep.html"
_BANNERS = {ExitCode.OK: "ok", ExitCode.REGRESSION: "bad", ExitCode.SILENT: "silent"}


@dataclass(frozen=True, kw_only=True)
class _Square:
    """One cell of one variant's heat map."""

    label: str
    share: str
    colour: str  # a CSS colour from the failure rate: white for none, deep red for every trial
    ink: str
    title: str
    href: str | None
    winner: bool


@dataclass(frozen=True, kw_only=True)
class _HeatMap:
    variant: str
    caption: str  # the variant, and its database when the sweep has more than one
    rows: list[tuple[int, list[_Square]]]  # in flight, then a square per interval


def render_sweep_report(result: SweepResult) -> str:
    """The report of a sweep as a self-contained HTML page."""
    winning = [cell for cell in result.cells if cell.cell == result.winner]
    return render(
        "sweep.html.j2",
        result=result,
        title=f"sweep: {describe_cell(result.winner) if result.winner else 'no schedule detected'}",
        banner=_BANNERS.get(result.exit_code, "error"),
        heat_maps=[
            _heat_map(result, index, database)
            for index in range(len(result.variants))
            for database in result.settings.databases
        ],
        winning=winning,
        describe_cell=describe_cell,
        format_rate=format_rate,
        lower_bound=_lower_bound,
        report_file=REPORT_FILE,
    )


def publish_sweep(result: SweepResult, results_path: Path) -> Path:
    """Write the report of every cell's run that has none yet, then the sweep's report beside its results."""
    for cell in result.cells:
        run_dir = results_path.parent / cell.run_dir
        if not (run_dir / REPORT_FILE).exists():
            write_report(read_results(run_dir / RESULTS_FILE), run_dir / REPORT_FILE)
    return write_sweep_report(result, results_path.with_name(SWEEP_REPORT_FILE))


def write_sweep_report(result: SweepResult, path: Path) -> Path:
    """Render the sweep's report to ``path`` (atomically); its links to the cells' runs are relative to it."""
    return write_page(path, render_sweep_report(result))


def _heat_map(result: SweepResult, index: int, database: Database) -> _HeatMap:
    grid = {(c.cell.in_flight, c.cell.interval, c.cell.database): c for c in result.cells if c.stage == "grid"}
    variant = result.variants[index]
    rows = [
        (n, [_square(variant, grid.get((n, i, database)), index, result) for i in result.settings.intervals])
        for n in result.settings.in_flight
    ]
    on = f" on {DATABASE_NAMES[database]}" if len(result.settings.databases) > 1 else ""
    return _HeatMap(variant=variant, caption=variant + on, rows=rows)


def _square(variant: str, cell: CellResult | None, index: int, result: SweepResult) -> _Square:
    if cell is None:
        return _Square(
            label="-", share="not run", colour="#eceff1", ink="#5f6b76", title="not run", href=None, winner=False
        )
    summary = cell.summaries[index]
    rate = summary.trial_failure_rate
    share = rate.estimate or 0.0
    title = (
        f"{variant}, {describe_cell(cell.cell)}: {rate.count} of {rate.total} trials failed, "
        f"{format_rate(rate)}{_lower_bound(summary)}; {summary.server_errors} of {summary.requests} requests 5xx; "
        f"{cell.requests} requests per trial, cost {cell.cost:g}; {cell.duration:.1f} s"
        + ("" if cell.complete else "; cut short")
    )
    return _Square(
        label=f"{rate.count}/{rate.total}",
        share=f"{share:.0%}",
        colour=f"hsl(0, 75%, {100 - 55 * share:.0f}%)",
        ink="#fff" if share > 0.6 else "#1d2329",
        title=title,
        href=f"{cell.run_dir}/{REPORT_FILE}",
        winner=cell.cell == result.winner,
    )


def _lower_bound(summary: VariantSummary) -> str:
    """For a variant that failed in every trial, how low its rate may be (an exact one-sided 95% bound)."""
    rate = summary.trial_failure_rate
    if rate.count and rate.count == rate.total:
        return f", at least {detection_lower_bound(rate):.1%} (exact, 95%)"
    return ""
