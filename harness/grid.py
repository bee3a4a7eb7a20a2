"""The grid of a sweep: its cells, what a cell costs, when it detects, which one wins.

Each cell is a ``waves`` schedule: ``in_flight`` requests to ``/slowusers/`` sent at once,
``waves`` times, ``interval`` tutorial-seconds apart (scaled by the time scale, as in a
scenario file). One in flight is the tutorial's staggered recipe; many in flight is what
breaks the unpatched build on today's stack (DESIGN.md).

The *cost* of a cell, what "cheapest" minimises, is requests per trial times the planned
seconds of a trial (the last wave's offset plus the longest sleep of ``/slowusers/``, both
scaled): it grows with the load a trial puts on the machine and with how long it holds
it, and it is known before anything runs, so a noisy shared machine cannot reorder the
grid. Cells run cheapest first: a sweep stopped early has measured the cheap end.

A cell *detects* when every variant expected to fail failed in at least ``target`` of its
trials (below 100 trials at 0.99, that is in all of them), every variant expected to be
clean had no failure and no unanswered request, and every trial ran to its end. Ten
failures in ten trials do not show a 99% rate (the exact 95% lower bound is 74%), and the
cheapest of many cells that passed is the one most likely to have passed by luck; so the
detecting cells are confirmed cheapest first with ``confirm_trials`` more trials under the
same rule, and the first one confirmed is the winner.

Pure: nothing here starts a server (:mod:`harness.sweep` runs the plan).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness.errors import ExitCode, UsageError
from harness.results import SWEEP_FILE, CellResult, SweepCell, SweepResult, SweepSettings, VariantSummary
from harness.scenario import DEFAULT_TRIALS, MAX_REQUESTS, Scenario, Schedule, Seed, scenario_toml
from harness.settings import (
    DEFAULT_HOST,
    DEFAULT_MAX_CELLS,
    DEFAULT_POSTGRES_MAX_CONNECTIONS,
    DEFAULT_START_TIMEOUT,
    DEFAULT_SWEEP_MAX_SECONDS,
)
from harness.variant import DEFAULT_DATABASE, Expectation, Variant

# What a trial costs besides its schedule, measured on the project's 2-core machine
# (harness run and harness sweep, both variants): starting two servers and seeding them
# took 0.6 s on an idle machine and 0.9 s beside other work, and each request about 5 ms
# of the client's and server's CPU. The higher figure: an estimate is a bound to plan by.
_START_SECONDS = 0.9
_REQUEST_SECONDS = 0.005
# On PostgreSQL (benchmarks/postgres_server.py, same machine): a trial 0.65 s longer (the 0.5 s before
# connections left open are counted, a fresh database, the sampling); its server 0.9 s to start on disk.
_POSTGRES_TRIAL_SECONDS = 0.65
_POSTGRES_START_SECONDS = 0.9
# /slowusers/'s countdown starts at 10: a fresh server's first request sleeps 9 tutorial-seconds, later ones less.
_LONGEST_SLEEP = 9.0


@dataclass(frozen=True, kw_only=True)
class SweepPlan:
    settings: SweepSettings  # checked by check_grid
    variants: tuple[Variant, ...]
    sweep_dir: Path
    host: str = DEFAULT_HOST
    start_timeout: float = DEFAULT_START_TIMEOUT
    max_seconds: float = DEFAULT_SWEEP_MAX_SECONDS
    base: Scenario | None = None  # whose seed, request, timeout and fail_on every cell keeps; None: the tutorial's
    database_url: str | None = None  # the user's PostgreSQL server for the cells on PostgreSQL; None: the harness's
    postgres_max_connections: int = DEFAULT_POSTGRES_MAX_CONNECTIONS  # the harness's own PostgreSQL's, per app server

    @property
    def results_path(self) -> Path:
        return self.sweep_dir / SWEEP_FILE

    @property
    def cells(self) -> tuple[SweepCell, ...]:
        """Every (interval, in flight, database), cheapest first; of equal cost, the databases in the order given."""
        grid = [
            SweepCell(interval=i, in_flight=n, database=d)
            for d in self.settings.databases
            for i in self.settings.intervals
            for n in self.settings.in_flight
        ]
        return tuple(sorted(grid, key=lambda cell: (self.cost(cell), cell.in_flight)))

    def scenario(self, cell: SweepCell, *, trials: int = DEFAULT_TRIALS) -> Scenario:
        """The cell as a scenario: what each of its runs replays, and what --write-scenario saves."""
        waves = self.settings.waves
        base = self.base or Scenario(
            name="tutorial", description="", seed=Seed(), schedule=Schedule(kind="waves", requests=1)
        )
        request = base.schedule.request
        return replace(
            base,
            name=f"sweep-{cell_name(cell)}",  # names run folders: no spaces
            description=(
                f"{waves} waves of {cell.in_flight} requests on {request.method} {request.path}, {cell.interval:g} "
                "tutorial-seconds apart: a cell of harness sweep"
            ),
            schedule=Schedule(
                kind="waves",
                requests=waves * cell.in_flight,
                interval=cell.interval,
                wave_size=cell.in_flight,
                request=request,
            ),
            trials=trials,
            time_scale=self.settings.time_scale,
            expect=self.expectations,
        )

    @property
    def expectations(self) -> dict[str, Expectation]:
        """What each variant is expected to do: as the base scenario says, else as the variant says."""
        return {v.name: self.base.expectation(v) if self.base else v.expect for v in self.variants}

    def planned_seconds(self, cell: SweepCell) -> float:
        """How long a trial's schedule lasts as planned: the last wave's offset plus the longest sleep."""
        return ((self.settings.waves - 1) * cell.interval + _LONGEST_SLEEP) * self.settings.time_scale

    def cost(self, cell: SweepCell) -> float:
        """Requests per trial times planned seconds per trial: what "cheapest" minimises."""
        return self.settings.waves * cell.in_flight * self.planned_seconds(cell)

    def trial_seconds(self, cell: SweepCell) -> float:
        """Estimated wall seconds of one trial of the cell: servers, seeding, the schedule, the requests' CPU."""
        requests = self.settings.waves * cell.in_flight
        postgres = _POSTGRES_TRIAL_SECONDS if cell.database == "postgres" else 0.0
        return _START_SECONDS + self.planned_seconds(cell) + requests * _REQUEST_SECONDS + postgres

    def estimated_seconds(self) -> float:
        """The grid's wall time, plus one confirmation of its costliest cell (an upper bound for one).

        A cell on PostgreSQL starts a server of its own (each cell is a run), unless ``database_url`` names one.
        """
        rounds = math.ceil(self.settings.trials / self.settings.jobs)
        confirmation = math.ceil(self.settings.confirm_trials / self.settings.jobs)
        servers = 0 if self.database_url else sum(cell.database == "postgres" for cell in self.cells) + 1
        return (
            rounds * sum(map(self.trial_seconds, self.cells))
            + confirmation * max(map(self.trial_seconds, self.cells))
            + (servers * _POSTGRES_START_SECONDS if "postgres" in self.settings.databases else 0.0)
        )


def describe_grid(settings: SweepSettings) -> str:
    """``3 intervals x 5 in flight``, ``x 2 databases`` added when there are more than one."""
    databases = f" x {len(settings.databases)} databases" if len(settings.databases) > 1 else ""
    return f"{len(settings.intervals)} intervals x {len(settings.in_flight)} in flight{databases}"


def cell_name(cell: SweepCell) -> str:
    """``5-in-flight-every-0.5``, ``-on-postgres`` added off the default database: a cell in a folder's name."""
    on = f"-on-{cell.database}" if cell.database != DEFAULT_DATABASE else ""
    return f"{cell.in_flight}-in-flight-every-{cell.interval:g}{on}"


def check_grid(settings: SweepSettings, *, max_cells: int = DEFAULT_MAX_CELLS) -> SweepSettings:
    """The settings as they are, if their grid can be run; else a usage error that names the options."""
    # Each value was checked as it was read (harness.settings); what is left involves several options.
    if settings.waves * max(settings.in_flight) > MAX_REQUESTS:  # a cell is a scenario, held to a scenario's ceiling
        raise UsageError(
            f"--in-flight {max(settings.in_flight)} x --waves {settings.waves} is "
            f"{settings.waves * max(settings.in_flight)} requests a trial, more than the {MAX_REQUESTS:,} a scenario "
            "may send"
        )
    if settings.waves < 2 and len(settings.intervals) > 1:
        raise UsageError("--waves 1 is a single wave, so intervals between waves mean nothing: give --waves 2 or more")
    if settings.size > max_cells:
        raise UsageError(
            f"the grid has {settings.size} cells ({describe_grid(settings)}), more than --max-cells {max_cells}"
        )
    return settings


def detects(summaries: Sequence[VariantSummary], expectations: Mapping[str, Expectation], target: float) -> bool:
    """Whether a cell's trials show the rule of the module's docstring: the broken caught, the clean clean."""

    def held_up(summary: VariantSummary) -> bool:
        if not summary.trials or summary.error_trials or summary.interrupted:
            return False
        if expectations[summary.variant] == "fails":
            return summary.failed_trials >= target * summary.trials
        return summary.failed_trials == 0 and summary.transport_errors + summary.timeouts == 0

    caught = any(expectations[summary.variant] == "fails" for summary in summaries)
    return caught and all(held_up(summary) for summary in summaries)


def choose_winner(cells: Sequence[CellResult], *, confirm: bool) -> SweepCell | None:
    """The cheapest grid cell that detected, and, if confirmations are asked for, was confirmed."""
    confirmed = {c.cell for c in cells if c.stage == "confirm" and c.detects}
    candidates = [c for c in cells if c.stage == "grid" and c.detects and (not confirm or c.cell in confirmed)]
    best = min(candidates, key=cheapest_first, default=None)
    return best.cell if best else None


def cheapest_first(cell: CellResult) -> tuple[float, int, float]:
    """The order cells are confirmed and a winner is chosen in: by cost, then fewer in flight, then shorter interval."""
    return cell.cost, cell.cell.in_flight, cell.cell.interval


def sweep_exit_code(
    cells: Sequence[CellResult], winner: SweepCell | None, expectations: Mapping[str, Expectation]
) -> ExitCode:
    """Regression when a build expected to be clean failed in any cell; else OK with a winner.

    Without one: a harness error when some trial could not run (the grid was not fully
    measured), else silent (no schedule of the grid detected the broken build reliably).
    """
    summaries = [summary for cell in cells for summary in cell.summaries]
    if any(expectations[s.variant] == "clean" and s.failed_trials for s in summaries):
        return ExitCode.REGRESSION
    if winner is not None:
        return ExitCode.OK
    if any(s.error_trials for s in summaries):
        return ExitCode.HARNESS_ERROR
    return ExitCode.SILENT


def winner_scenario(plan: SweepPlan, result: SweepResult, *, results_path: Path) -> str:
    """The winning cell as the text of a scenario file, with a comment that says where it came from."""
    if result.winner is None:
        raise ValueError("the sweep named no winner")
    settings = result.settings
    measured = [cell for cell in result.cells if cell.cell == result.winner]
    evidence = "\n".join(
        f"  {cell.stage}: "
        + ", ".join(f"{s.variant} failed {s.failed_trials} of {s.trials} trials" for s in cell.summaries)
        for cell in measured
    )
    comment = (
        f"Written by harness sweep (started {result.started_at}): the cheapest schedule of its grid\n"
        f"(intervals {', '.join(f'{i:g}' for i in settings.intervals)}; in flight "
        f"{', '.join(map(str, settings.in_flight))}; {settings.waves} waves; time scale {settings.time_scale:g})\n"
        f"that detected at target {settings.target:g}:\n{evidence}\n"
        f"Sweep results: {results_path}\n"
        "Check it on its own: harness run --scenario THIS_FILE --trials 100"
        + (f" --database {result.winner.database}" if result.winner.database != DEFAULT_DATABASE else "")
    )
    return scenario_toml(plan.scenario(result.winner, trials=settings.trials), comment=comment)
