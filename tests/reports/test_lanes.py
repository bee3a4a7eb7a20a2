"""The thread lanes' geometry from a trace: a SQLAlchemy pool's connections, the pool, shared sessions, tasks."""

from __future__ import annotations

from dataclasses import replace

from harness.reports._lanes import ROW, thread_lanes
from harness.reports._timeline import Axis
from harness.results import TraceEvent, TrialResult
from tests.harness.factories import trial

AXIS = Axis(start=0.0, end=1.0)
POOL_EMPTY = "TimeoutError: QueuePool limit of size 2 overflow 0 reached, connection timed out, timeout 0.50"


def traced(events: list[TraceEvent]) -> TrialResult:
    """Four requests (#2 and #3 failed) of a build whose trace is ``events``."""
    return replace(trial("app", 1, ["ok", "ok", "server-error", "server-error"]), trace=tuple(events))


def event(kind: str, request: int | None, time: float, **fields: object) -> TraceEvent:
    request_id = None if request is None else f"app-t1-schedule-{request}"
    return TraceEvent(kind=kind, request_id=request_id, thread=0, time=time, **fields)  # type: ignore[arg-type]


def test_each_pooled_connection_has_a_lane_with_a_bar_per_checkout_in_the_colour_of_who_held_it() -> None:
    lanes = thread_lanes(
        traced(
            [
                event("database", None, -0.5, sql="AsyncAdaptedQueuePool"),
                event("checkout", 0, 0.1, task=7, connection=1),
                event("checkout", 1, 0.1, task=8, connection=2),
                event("checkin", 0, 0.2, task=7, connection=1),
                event("checkout", 2, 0.25, task=9, connection=1),  # request #1 and #2 never give theirs back
                event("checkout", 3, 0.8, task=10, error=POOL_EMPTY),
                event("checkin", 2, 0.9, task=3, connection=1, auto=True),  # the garbage collector's
            ]
        ),
        AXIS,
    )

    assert lanes is not None
    assert [label for _, label in lanes.labels] == ["loop", "#1", "#2", "pool"]
    assert lanes.height == 4 * ROW
    held = [(hold.request_id[-1], hold.y, hold.kept) for hold in lanes.holds]
    assert held == [("0", ROW + 2, False), ("1", 2 * ROW + 2, True), ("2", ROW + 2, True)]
    first, never, collected = lanes.holds
    assert first.colour != never.colour
    assert never.x + never.width == AXIS.x(1.0)  # to the end: never given back
    assert collected.x + collected.width == AXIS.x(0.9)
    assert first.title == (
        "connection #1: checked out by request #0 in task 7 at +0.100 s, given back 0.100 s later in task 7"
    )
    assert collected.title.endswith("never given back: the garbage collector returned it 0.650 s later")
    [refused] = lanes.crosses
    assert refused.request_id.endswith("-3") and refused.y == 3 * ROW + ROW / 2
    assert refused.title == f"request #3: a checkout in task 10 at +0.800 s raised {POOL_EMPTY}"
    assert lanes.note == (
        "3 checkouts of 2 connections during the schedule, 2 never given back; 1 checkout found no free connection. "
        "Async code ran in 5 asyncio tasks on the event loop's thread; each mark names its task."
    )


def test_a_session_more_than_one_request_used_has_a_lane_with_each_call_and_a_cross_where_one_raised() -> None:
    illegal = "IllegalStateChangeError: Method 'close()' can't be called here"
    lanes = thread_lanes(
        traced(
            [
                event("session", None, -0.5, session=1),
                event("session", 1, 0.05, task=8, session=2),  # request #1's own: no lane
                event("session-call", 1, 0.06, task=8, session=2, sql="execute", start=0.055),
                event("session-close", 2, 0.15, task=9, session=1, sql="close", start=0.14, error=illegal),
                event("session-call", 3, 0.30, task=10, session=1, sql="execute", start=0.10),
            ]
        ),
        AXIS,
    )

    assert lanes is not None
    assert [label for _, label in lanes.labels] == ["loop", "s1"]
    assert [(call.request_id[-1], call.y) for call in lanes.calls] == [("2", ROW + 2), ("3", ROW + 2)]
    closed, executed = lanes.calls
    assert executed.x == AXIS.x(0.10) and executed.width == AXIS.x(0.30) - AXIS.x(0.10)
    assert closed.title == f"request #2: close() on session #1 in task 9, +0.140 s to +0.150 s; it raised {illegal}"
    [cross] = lanes.crosses
    assert (cross.request_id, cross.x) == (closed.request_id, closed.x + closed.width)
    assert not lanes.holds
    assert lanes.note.startswith("1 session more than one request used (#1). Async code ran in 3 asyncio tasks")


def test_a_peewee_trace_keeps_its_threads_lanes_and_note_alone() -> None:
    lanes = thread_lanes(
        traced(
            [
                TraceEvent(kind="connect", request_id="app-t1-schedule-0", thread=1, time=0.1, connection=1),
                TraceEvent(kind="close", request_id="app-t1-schedule-0", thread=1, time=0.2, connection=1),
            ]
        ),
        AXIS,
    )

    assert lanes is not None
    assert [label for _, label in lanes.labels] == ["w1"] and not lanes.holds and not lanes.calls
    assert lanes.note == "Each of the 1 connections opened for a request served only that request."
