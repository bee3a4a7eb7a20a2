"""Geometry of the thread lanes: what each server thread did, for which request, with which connection.

In the manner of Jepsen's timeline, one lane per thread. A thread-pool job (a phase of a
request: dependency enter or exit, endpoint, response validation) is a bar in its
request's colour; a Peewee connection is a line from where it was opened, through each lane
it was used on, to where it was closed (dashed to the end when it never was); a connect()
that raised is a cross.

A SQLAlchemy pool lends one connection to many requests in turn, so below the threads each of
its connections has a lane of its own: a bar from each checkout to its checkin in the colour of
the request that held it (faint when the app never gave it back); a checkout that found no
free connection is a cross on the ``pool`` lane; a session more than one request used has a
lane with a bar for each of its calls, a cross where one raised. Async code runs on the event
loop's thread, so there each mark names its asyncio task. Every mark names its request, so
selecting one request highlights its events on every lane. Times share the trial's :class:`Axis`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.diagnosis import fate_of, place, request_name, thread_name
from harness.reports._timeline import Axis
from harness.results import RequestRecord, TraceEvent, TrialResult
from harness.search import counted
from harness.trace import Hold, holds

ROW = 11.0  # SVG units per thread
_GOLDEN_ANGLE = 137.508  # successive requests get far-apart hues


@dataclass(frozen=True, kw_only=True)
class Span:
    request_id: str
    colour: str
    x: float
    y: float
    width: float
    title: str
    kept: bool = False  # a pool's connection the app never gave back


@dataclass(frozen=True, kw_only=True)
class Wire:
    """One connection's life across threads."""

    request_id: str  # the request that opened it
    colour: str
    points: str
    tail: str | None  # a never-closed connection's dashed line to the end of the axis
    title: str


@dataclass(frozen=True, kw_only=True)
class Cross:
    request_id: str
    x: float
    y: float
    title: str


@dataclass(frozen=True, kw_only=True)
class ThreadLanes:
    """One variant's server threads in one trial."""

    labels: tuple[tuple[float, str], ...]
    spans: tuple[Span, ...]
    wires: tuple[Wire, ...]
    crosses: tuple[Cross, ...]
    height: float
    note: str
    holds: tuple[Span, ...] = ()  # on the lanes of a SQLAlchemy pool's connections
    calls: tuple[Span, ...] = ()  # on the lanes of sessions more than one request used


def thread_lanes(result: TrialResult, axis: Axis) -> ThreadLanes | None:
    """The lanes of one variant's trial; None when it has no trace."""
    if not result.trace:
        return None
    records = {record.request_id: record for record in result.records}
    threads = sorted({event.thread for event in result.trace if event.time >= axis.start})
    rows = {thread: index * ROW for index, thread in enumerate(threads)}
    spans = tuple(
        Span(
            request_id=event.request_id or "",
            colour=_colour(records.get(event.request_id or "")),
            x=axis.x(event.start if event.start is not None else event.time),
            y=rows[event.thread] + 2,
            width=max(axis.x(event.time) - axis.x(event.start or event.time), 1.0),
            title=f"{_who(records, event.request_id)}: {event.phase} on {thread_name(event.thread)}, "
            f"+{event.start or 0:.3f} s to +{event.time:.3f} s",
        )
        for event in result.trace
        if event.kind == "phase" and event.thread in rows and event.time >= axis.start  # not the seeding's
    )
    crosses = tuple(
        Cross(
            request_id=event.request_id or "",
            x=axis.x(event.time),
            y=rows[event.thread] + ROW / 2,
            title=f"{_who(records, event.request_id)}: connect() on {thread_name(event.thread)} raised "
            f"{event.error!r} at +{event.time:.3f} s"
            + (f"; it still held connection #{event.connection}" if event.connection is not None else ""),
        )
        for event in result.trace
        if event.kind == "connect" and event.error is not None and event.thread in rows
    )
    lives = _lives(result.trace)
    wires = tuple(_wires(lives, rows, axis, records))
    pool = _pool_lanes(result.trace, axis, records, top=len(threads) * ROW)
    notes = [_note(lives, records, len(crosses)) if lives or crosses or not pool.note else "", pool.note]
    tasks = len({event.task for event in result.trace if event.task is not None and event.time >= axis.start})
    if tasks:
        notes.append(
            f"Async code ran in {counted(tasks, 'asyncio task')} on the event loop's thread; each mark names its task."
        )
    return ThreadLanes(
        labels=tuple((rows[t] + ROW - 2, "loop" if t == 0 else f"w{t}") for t in threads) + pool.labels,
        spans=spans,
        wires=wires,
        crosses=crosses + pool.crosses,
        height=len(threads) * ROW + pool.height,
        note=" ".join(filter(None, notes)),
        holds=pool.holds,
        calls=pool.calls,
    )


@dataclass(frozen=True, kw_only=True)
class _PoolLanes:
    """A SQLAlchemy app's lanes, below its threads': its pool's connections, the pool, the sessions requests shared."""

    labels: tuple[tuple[float, str], ...]
    holds: tuple[Span, ...]
    calls: tuple[Span, ...]
    crosses: tuple[Cross, ...]
    height: float
    note: str


def _pool_lanes(
    trace: Sequence[TraceEvent], axis: Axis, records: Mapping[str, RequestRecord], *, top: float
) -> _PoolLanes:
    lent = [h for h in holds(trace) if h.out.kind == "checkout" and (h.back is None or h.back.time >= axis.start)]
    refused = [e for e in trace if e.kind == "checkout" and e.error is not None and e.time >= axis.start]
    shared = _shared_sessions(trace, axis)
    connections = sorted({hold.connection for hold in lent})
    names = [f"#{n}" for n in connections] + (["pool"] if refused else []) + [f"s{n}" for n in shared]
    rows = {name: top + index * ROW for index, name in enumerate(names)}
    calls = [
        (event, _call(event, number, rows[f"s{number}"], axis, records))
        for number, events in shared.items()
        for event in events
    ]
    crosses = [
        Cross(
            request_id=event.request_id or "",
            x=axis.x(event.time),
            y=rows["pool"] + ROW / 2,
            title=f"{_who(records, event.request_id)}: a checkout {place(event)} at +{event.time:.3f} s raised "
            f"{event.error}",
        )
        for event in refused
    ]
    crosses += [
        Cross(request_id=span.request_id, x=span.x + span.width, y=span.y + ROW / 2 - 2, title=span.title)
        for event, span in calls
        if event.error is not None
    ]
    kept = sum(not hold.given_back for hold in lent)
    told = []
    if lent or refused:
        told.append(
            f"{counted(len(lent), 'checkout')} of {counted(len(connections), 'connection')} during the schedule, "
            + (f"{kept} never given back" if kept else "each given back")
        )
    if refused:
        told.append(f"{counted(len(refused), 'checkout')} found no free connection")
    if shared:
        told.append(f"{counted(len(shared), 'session')} more than one request used ({_numbers(shared)})")
    return _PoolLanes(
        labels=tuple((y + ROW - 2, name) for name, y in rows.items()),
        holds=tuple(_hold(hold, rows[f"#{hold.connection}"], axis, records) for hold in lent),
        calls=tuple(span for _, span in calls),
        crosses=tuple(crosses),
        height=len(rows) * ROW,
        note="; ".join(told) + "." if told else "",
    )


def _shared_sessions(trace: Sequence[TraceEvent], axis: Axis) -> dict[int, list[TraceEvent]]:
    """The calls during the schedule on each session more than one request used: shared, or carried over."""
    users: dict[int, set[str]] = {}
    calls: dict[int, list[TraceEvent]] = {}
    for event in trace:
        if event.session is None:
            continue
        if event.request_id is not None:
            users.setdefault(event.session, set()).add(event.request_id)
        if event.kind in ("session-call", "session-close") and event.time >= axis.start:
            calls.setdefault(event.session, []).append(event)
    return {number: calls[number] for number in sorted(calls) if len(users.get(number, ())) > 1}


def _numbers(sessions: Mapping[int, object]) -> str:
    return ", ".join(f"#{number}" for number in sessions)


def _hold(hold: Hold, y: float, axis: Axis, records: Mapping[str, RequestRecord]) -> Span:
    out = hold.out
    end = hold.back.time if hold.back is not None else axis.end
    return Span(
        request_id=out.request_id or "",
        colour=_colour(records.get(out.request_id or "")),
        x=axis.x(out.time),
        y=y + 2,
        width=max(axis.x(end) - axis.x(out.time), 1.0),
        title=f"connection #{hold.connection}: checked out by {_who(records, out.request_id)} {place(out)} at "
        f"+{out.time:.3f} s, {fate_of(hold)}",
        kept=not hold.given_back,
    )


def _call(event: TraceEvent, session: int, y: float, axis: Axis, records: Mapping[str, RequestRecord]) -> Span:
    start = event.start if event.start is not None else event.time
    return Span(
        request_id=event.request_id or "",
        colour=_colour(records.get(event.request_id or "")),
        x=axis.x(start),
        y=y + 2,
        width=max(axis.x(event.time) - axis.x(start), 1.0),
        title=f"{_who(records, event.request_id)}: {event.sql}() on session #{session} {place(event)}, "
        f"+{start:.3f} s to +{event.time:.3f} s" + (f"; it raised {event.error}" if event.error else ""),
    )


def _lives(trace: Sequence[TraceEvent]) -> dict[int, list[TraceEvent]]:
    """Each connection's events that succeeded, from connect to close, by connection number."""
    lives: dict[int, list[TraceEvent]] = {}
    for event in trace:
        if event.connection is not None and event.error is None and event.kind in ("connect", "query", "close"):
            lives.setdefault(event.connection, []).append(event)
    return lives


def _wires(
    lives: Mapping[int, list[TraceEvent]], rows: Mapping[int, float], axis: Axis, records: Mapping[str, RequestRecord]
) -> list[Wire]:
    wires = []
    for number, events in lives.items():
        opened = events[0]
        if opened.kind != "connect" or (events[-1].kind == "close" and events[-1].time < axis.start):
            continue  # its opening is not in the trace, or it ended before the schedule
        shown = [e for e in events if e.thread in rows]
        if not shown:
            continue
        points = " ".join(f"{axis.x(e.time)},{rows[e.thread] + ROW / 2}" for e in shown)
        closed = events[-1].kind == "close"
        last = shown[-1]
        users = sorted({_who(records, e.request_id) for e in events})
        wires.append(
            Wire(
                request_id=opened.request_id or "",
                colour=_colour(records.get(opened.request_id or "")),
                points=points,
                tail=None
                if closed
                else f"{axis.x(last.time)},{rows[last.thread] + ROW / 2} "
                f"{axis.x(axis.end)},{rows[last.thread] + ROW / 2}",
                title=f"connection #{number}: opened by {_who(records, opened.request_id)} on "
                f"{thread_name(opened.thread)} at +{opened.time:.3f} s; used by {', '.join(users)}; "
                + (
                    f"closed by {_who(records, events[-1].request_id)} on {thread_name(events[-1].thread)} "
                    f"at +{events[-1].time:.3f} s"
                    if closed
                    else "never closed"
                ),
            )
        )
    return wires


def _note(lives: Mapping[int, list[TraceEvent]], records: Mapping[str, RequestRecord], failed_connects: int) -> str:
    """Whether each request kept its connection to itself: what the patch is for."""
    opened = {n: events[0].request_id for n, events in lives.items() if events[0].kind == "connect"}
    shared = [n for n, request in opened.items() if any(e.request_id != request for e in lives[n])]
    in_requests = [n for n, request in opened.items() if request in records]
    if not shared and not failed_connects:
        return f"Each of the {len(in_requests)} connections opened for a request served only that request."
    return (
        f"{len(shared)} of {len(opened)} connections were used or closed by a request other than the one that "
        f"opened them; {failed_connects} connect() calls raised."
    )


def _who(records: Mapping[str, RequestRecord], request_id: str | None) -> str:
    record = records.get(request_id or "")
    if record is None:
        return request_id or "no request"
    return request_name(record)


def _colour(record: RequestRecord | None) -> str:
    if record is None:
        return "#555"
    if record.phase == "seed":
        return "#999"
    return f"hsl({record.index * _GOLDEN_ANGLE % 360:.0f},65%,42%)"
