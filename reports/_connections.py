"""Geometry of the connection charts: each PostgreSQL build's open connections through its trials.

One small chart per build: a step line per trial, from the samples the database server
gave (harness.postgres counts them in pg_stat_activity; a sample is kept where the number
changed), on seconds from the schedule's start as the timelines are. Every trial is a
faint line; the one that left the most connections open (else the one with the most open
at once) is drawn strongly and named, with a dashed line where its leftovers were counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.reports._timeline import Axis, Tick
from harness.results import DEFAULT_LEAK_WAIT, ConnectionSample, TrialResult

CHART_TRIALS = 20  # trials drawn per build: a long run's chart is a haze past this, and the page would grow with each
HEIGHT = 100.0  # SVG units from no connection to the build's peak
_TOP = 6.0  # room above the peak line for its label


@dataclass(frozen=True, kw_only=True)
class Step:
    """One trial's open connections as a step line."""

    points: str
    title: str


@dataclass(frozen=True, kw_only=True)
class Level:
    y: float
    label: str


@dataclass(frozen=True, kw_only=True)
class ConnectionChart:
    """One build's trials on one chart."""

    variant: str
    faint: tuple[Step, ...]
    strong: Step
    named: TrialResult  # the trial drawn strongly
    counted_x: float | None  # where the named trial's leftovers were counted; None: they were not
    counted_y: float | None
    ticks: tuple[Tick, ...]
    levels: tuple[Level, ...]
    sampled: int  # the build's trials with samples
    drawn: int  # of them on the chart

    @property
    def top(self) -> float:
        return _TOP

    @property
    def bottom(self) -> float:
        return _TOP + HEIGHT

    @property
    def capped(self) -> bool:
        return self.drawn < self.sampled


def connection_charts(trials: Sequence[TrialResult], variants: Sequence[str]) -> list[ConnectionChart]:
    """A chart per build with any trial sampled, in ``variants`` order."""
    sampled: dict[str, list[TrialResult]] = {}
    for trial in sorted(trials, key=lambda t: t.trial):
        if trial.connections:
            sampled.setdefault(trial.variant, []).append(trial)
    return [_chart(variant, sampled[variant]) for variant in variants if variant in sampled]


def _chart(variant: str, trials: list[TrialResult]) -> ConnectionChart:
    named = max(trials, key=lambda t: (t.leaked_connections or 0, t.peak_connections or 0, -t.trial))
    # The named trial is always drawn, even when it is past the first CHART_TRIALS.
    drawn = [t for t in trials[:CHART_TRIALS] if t is not named]
    counted_at = _counted_at(named)
    times = [s.time for t in (*drawn, named) for s in t.connections]
    start = min(0.0, *times)
    axis = Axis(start=start, end=max(start + 1e-3, *times, *([counted_at] if counted_at is not None else [])))
    peak = max(1, *(s.open for t in trials for s in t.connections))  # each change is kept, so the peak is too

    def y(open_connections: int) -> float:
        return round(_TOP + (1 - open_connections / peak) * HEIGHT, 1)

    return ConnectionChart(
        variant=variant,
        faint=tuple(_step(t, axis, y) for t in drawn),
        strong=_step(named, axis, y),
        named=named,
        counted_x=None if counted_at is None else axis.x(counted_at),
        counted_y=None if named.leaked_connections is None else y(named.leaked_connections),
        ticks=axis.ticks(),
        levels=tuple(Level(y=y(n), label=str(n)) for n in sorted({0, peak // 2, peak})),
        sampled=len(trials),
        drawn=len(drawn) + 1,
    )


def _step(trial: TrialResult, axis: Axis, y: Callable[[int], float]) -> Step:
    points: list[str] = []
    before: ConnectionSample | None = None
    for sample in trial.connections:
        x = axis.x(sample.time)
        if before is not None:
            points.append(f"{x:g},{y(before.open):g}")  # the number holds until the next sample
        points.append(f"{x:g},{y(sample.open):g}")
        before = sample
    return Step(points=" ".join(points), title=f"trial {trial.trial}: {describe_trial(trial)}")


def describe_trial(trial: TrialResult) -> str:
    """What the database server saw of one trial, in a few words."""
    left = "not counted" if trial.leaked_connections is None else str(trial.leaked_connections)
    return f"at most {trial.peak_connections} open at once, left open: {left}"


def _counted_at(trial: TrialResult) -> float | None:
    """When the trial's leftovers were counted: ``DEFAULT_LEAK_WAIT`` after its last response."""
    answered = [r.completed_at for r in trial.records if r.completed_at is not None]
    if trial.leaked_connections is None or not answered:
        return None
    return max(answered) + DEFAULT_LEAK_WAIT
