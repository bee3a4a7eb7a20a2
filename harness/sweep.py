"""``harness sweep``: run a :class:`harness.grid.SweepPlan`, cell by cell, through the run pipeline.

Each cell is a run of its own through :func:`harness.pipeline.execute` (a fresh server per
variant per trial, ``jobs`` trials side by side), in its own folder under the sweep's
``cells/``, with its results. The sweep's own document (``sweep.json``, a
:class:`harness.results.SweepResult`) is rewritten after every cell, so a sweep cut short
keeps every cell it finished, and the one it cut short as far as it got. A stop signal
whose KeyboardInterrupt Python swallowed stops it before its next cell
(:func:`harness.interrupts.raise_if_stopped`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from harness.environment import describe_environment
from harness.files import writing
from harness.grid import SweepPlan, cell_name, cheapest_first, choose_winner, detects, sweep_exit_code
from harness.interpreter import checked_interpreters
from harness.interrupts import held, raise_if_stopped
from harness.pipeline import execute
from harness.plan import RunPlan
from harness.results import CellResult, RunResult, Stage, SweepCell, SweepResult, read_results, write_results
from harness.variant import Expectation

CELLS_DIR = "cells"  # in the sweep's folder: one run folder per cell and stage

CellCallback = Callable[[CellResult, SweepResult], None]


def run_sweep(plan: SweepPlan, on_cell: CellCallback | None = None) -> SweepResult:
    """Measure every cell (cheapest first), then confirm candidates; the sweep's file is rewritten after each.

    Starts no cell once ``max_seconds`` have passed. A Ctrl-C keeps every finished cell and
    the one it cut short, and the file says the sweep is incomplete.
    """
    started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    started = time.monotonic()
    environment = describe_environment()
    expectations = plan.expectations
    settings = plan.settings
    cells: list[CellResult] = []
    complete = limit_reached = False

    def snapshot() -> SweepResult:
        winner = choose_winner(cells, confirm=settings.confirm_trials > 0)
        return SweepResult(
            settings=settings,
            variants=tuple(expectations),
            started_at=started_at,
            duration=round(time.monotonic() - started, 3),
            estimated_seconds=round(plan.estimated_seconds(), 1),
            complete=complete,
            limit_reached=limit_reached,
            environment=environment,
            cells=tuple(cells),
            winner=winner,
            exit_code=sweep_exit_code(cells, winner, expectations),
        )

    def measure(cell: SweepCell, stage: Stage, trials: int) -> CellResult | None:
        """One stage of one cell, or None when the time is up."""
        nonlocal limit_reached
        raise_if_stopped()
        if time.monotonic() - started >= plan.max_seconds:
            limit_reached = True
            return None
        run = RunPlan(
            scenario=plan.scenario(cell, trials=trials),
            variants=plan.variants,
            run_dir=plan.sweep_dir / CELLS_DIR / cell_folder(cell, stage),
            host=plan.host,
            start_timeout=plan.start_timeout,
            jobs=settings.jobs,
            database=cell.database,
            database_url=plan.database_url,
            postgres_max_connections=plan.postgres_max_connections,
            interpreters=checked_interpreters(plan.variants, timeout=plan.start_timeout),  # checked by harness sweep
        )
        with writing(run.run_dir):
            run.run_dir.mkdir(parents=True)
        try:
            execute(run)
        finally:  # read back as written, so a cell cut short by Ctrl-C is kept as far as it got
            with held():
                if run.results_path.exists():  # execute writes it first thing; a Ctrl-C may come sooner
                    summary = read_results(run.results_path, with_trials=False)
                    cells.append(_cell_result(plan, cell, stage, run, summary, expectations))
                    write_results(snapshot(), plan.results_path)
        if on_cell:
            on_cell(cells[-1], snapshot())
        return cells[-1]

    with writing(plan.sweep_dir):
        plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    write_results(snapshot(), plan.results_path)
    try:
        for cell in plan.cells:
            if measure(cell, "grid", settings.trials) is None:
                break
        candidates = sorted((c for c in cells if c.detects), key=cheapest_first) if settings.confirm_trials else []
        for candidate in candidates:
            confirmation = measure(candidate.cell, "confirm", settings.confirm_trials)
            if confirmation is None or confirmation.detects:
                break
        raise_if_stopped()
        complete = not limit_reached
    finally:
        with held():
            result = snapshot()
            write_results(result, plan.results_path)
    return result


def cell_folder(cell: SweepCell, stage: Stage) -> str:
    """The cell's run folder under the sweep's ``cells/``."""
    return f"{stage}-{cell_name(cell)}"


def _cell_result(
    plan: SweepPlan,
    cell: SweepCell,
    stage: Stage,
    run: RunPlan,
    result: RunResult,
    expectations: Mapping[str, Expectation],
) -> CellResult:
    return CellResult(
        cell=cell,
        stage=stage,
        requests=run.scenario.schedule.requests,
        cost=round(plan.cost(cell), 6),
        run_dir=str(run.run_dir.relative_to(plan.sweep_dir)),
        duration=result.duration,
        complete=result.complete,
        summaries=result.summaries,
        detects=result.complete and detects(result.summaries, expectations, plan.settings.target),
    )
