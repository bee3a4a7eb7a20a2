"""Geometry of the request timelines: one bar per request on an axis shared by a trial's variants.

Like Jepsen's timeline page: time runs left to right, each request of the schedule is a
row, its bar spans send to answer. Seed requests are set-up and are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.results import RequestRecord, TrialResult

WIDTH = 640.0  # SVG user units; the browser scales the drawing to the column
GUTTER = 34.0  # room for the request indices on the left
_PLOT = WIDTH - GUTTER - 6.0
_MAX_HEIGHT = 420.0
_ROW_LIMITS = (1.5, 14.0)
_LABEL_MIN_ROW = 9.0  # below this, only every tenth index is labelled


@dataclass(frozen=True, kw_only=True)
class Bar:
    index: int
    request_id: str
    outcome: str
    x: float
    y: float
    width: float
    planned_x: float | None
    label: bool
    title: str


@dataclass(frozen=True, kw_only=True)
class Lane:
    """One variant's requests in one trial."""

    variant: str
    bars: tuple[Bar, ...]
    failed: int
    requests: int
    error: str | None
    server_exit_code: int | None
    leaked_connections: int | None  # on PostgreSQL: still open after its last response (harness.summary.LEAK_WORDS)


@dataclass(frozen=True, kw_only=True)
class Axis:
    """Seconds from the schedule's start to SVG x, shared by a trial's timelines and thread lanes."""

    start: float
    end: float

    def x(self, seconds: float) -> float:
        clamped = min(max(seconds, self.start), self.end)
        return round(GUTTER + (clamped - self.start) / (self.end - self.start) * _PLOT, 2)

    def ticks(self) -> tuple[Tick, ...]:
        return tuple(Tick(x=self.x(t), label=f"{t:g} s") for t in _tick_values(self.start, self.end))


@dataclass(frozen=True, kw_only=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, kw_only=True)
class TrialTimeline:
    trial: int
    lanes: tuple[Lane, ...]
    axis: Axis
    ticks: tuple[Tick, ...]
    row_height: float
    height: float

    @property
    def failed(self) -> bool:
        return any(lane.failed for lane in self.lanes)


def trial_timelines(trials: Sequence[TrialResult], variants: Sequence[str]) -> list[TrialTimeline]:
    """One timeline per trial number, its variants' lanes in ``variants`` order, on one axis."""
    by_trial: dict[int, dict[str, TrialResult]] = {}
    for result in trials:
        by_trial.setdefault(result.trial, {})[result.variant] = result
    return [_timeline(number, [by_trial[number][v] for v in variants if v in by_trial[number]]) for number in by_trial]


def _timeline(number: int, results: Sequence[TrialResult]) -> TrialTimeline:
    schedules = [[r for r in result.records if r.phase == "schedule"] for result in results]
    records = [r for schedule in schedules for r in schedule]
    start = min([0.0, *(r.sent_at for r in records)])
    end = max([start + 1e-3, *(_end(r) for r in records), *(r.planned_offset or 0.0 for r in records)])
    rows = max((len(schedule) for schedule in schedules), default=0)
    row = min(max(_MAX_HEIGHT / max(rows, 1), _ROW_LIMITS[0]), _ROW_LIMITS[1])
    axis = Axis(start=start, end=end)
    lanes = tuple(
        Lane(
            variant=result.variant,
            bars=tuple(_bar(r, axis, row) for r in sorted(schedule, key=lambda r: r.index)),
            failed=sum(1 for r in schedule if r.outcome == "server-error"),
            requests=len(schedule),
            error=result.error,
            server_exit_code=result.server_exit_code,
            # A pool's idle connections, every one given back by the trace, are no leak.
            leaked_connections=None if result.unclosed_connections == 0 else result.leaked_connections,
        )
        for result, schedule in zip(results, schedules, strict=True)
    )
    return TrialTimeline(
        trial=number, lanes=lanes, axis=axis, ticks=axis.ticks(), row_height=round(row, 2), height=rows * row
    )


def _bar(record: RequestRecord, axis: Axis, row: float) -> Bar:
    finish = _end(record) if record.completed_at is not None else axis.end
    left = axis.x(record.sent_at)
    return Bar(
        index=record.index,
        request_id=record.request_id,
        outcome=record.outcome,
        x=left,
        y=round(record.index * row, 2),
        width=round(max(axis.x(finish) - left, 1.0), 2),
        planned_x=None if record.planned_offset is None else axis.x(record.planned_offset),
        label=row >= _LABEL_MIN_ROW or record.index % 10 == 0,
        title=_describe_request(record),
    )


def _describe_request(record: RequestRecord) -> str:
    """What hovering or clicking a bar tells: index, timing, answer, server-side exception.

    Not the cause, nor the request's id (its ``data-req``): a click adds them, the cause from
    the lane's list of causes, which has it once.
    """
    planned = "" if record.planned_offset is None else f", planned at +{record.planned_offset:.3f} s"
    parts = [f"request #{record.index} {record.method} {record.path}{planned}, sent at +{record.sent_at:.3f} s"]
    if record.completed_at is None:
        parts.append(f"no answer ({record.outcome})")
    else:
        answer = f"HTTP {record.status}" if record.status is not None else record.outcome
        parts.append(f"{answer} after {(record.completed_at - record.sent_at) * 1000:.0f} ms")
    if record.error:
        parts.append(record.error)
    parts += [f"{exc.type}: {exc.message}" for exc in record.exceptions]
    return "\n".join(parts)


def _end(record: RequestRecord) -> float:
    return record.completed_at if record.completed_at is not None else record.sent_at


def _tick_values(start: float, end: float) -> list[float]:
    """Round times, about five of them, from ``start`` to ``end``."""
    raw = (end - start) / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(start / step) * step
    count = int((end - first) / step + 1e-9) + 1
    return [round(first + i * step, 10) for i in range(count)]
