"""Read a server's trace (written by :mod:`harness.server.tracer`) into the results' terms."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.files import read_json_lines
from harness.results import TraceEvent, microseconds

TRACE_FILE = "trace.jsonl"  # in each server's folder, beside its log


def read_trace(path: Path, origin: float) -> tuple[list[TraceEvent], bool]:
    """The trace's events with times in seconds from ``origin``; and whether it was cut at its limit.

    A last line cut short by a killed server is skipped.
    """
    events: list[TraceEvent] = []
    truncated = False
    texts: dict[str, str] = {}  # each request id and phase once, not once per event: a long run holds them all
    for data in read_json_lines(path):
        try:
            if data.get("kind") == "truncated":
                truncated = True
                continue
            data["time"] = microseconds(data["time"] - origin)
            if data.get("start") is not None:
                data["start"] = microseconds(data["start"] - origin)
            data = {
                key: texts.setdefault(value, value) if isinstance(value, str) else value for key, value in data.items()
            }
            events.append(TraceEvent(**data))  # its fields are all plain values
        except (ValueError, TypeError, KeyError):
            continue
    return events, truncated


@dataclass(frozen=True, kw_only=True, slots=True)
class Hold:
    """A connection the app held: from Peewee's connect() to its close(), or from a pool checkout to its checkin."""

    out: TraceEvent
    back: TraceEvent | None  # None: still held when the trace ends

    @property
    def given_back(self) -> bool:
        """Whether the app gave it back: a checkin the garbage collector made for it does not count."""
        return self.back is not None and not self.back.auto

    @property
    def connection(self) -> int:
        assert self.out.connection is not None
        return self.out.connection


def holds(trace: Iterable[TraceEvent]) -> list[Hold]:
    """Every connection the app held, in the order it took them.

    Peewee numbers a connection per open, so its connect() and close() pair by number; a SQLAlchemy
    pool numbers a connection once and lends it out many times, so a checkin ends the checkout before it.
    """
    taken: dict[int, TraceEvent] = {}
    done: list[Hold] = []
    for event in trace:
        if event.connection is None:
            continue
        if (event.kind == "connect" and event.error is None) or event.kind == "checkout":
            taken.setdefault(event.connection, event)
        elif event.kind in ("close", "checkin") and event.connection in taken:
            done.append(Hold(out=taken.pop(event.connection), back=event))
    done.extend(Hold(out=out, back=None) for out in taken.values())
    return sorted(done, key=lambda hold: hold.out.time)


def unclosed_connections(held: Sequence[Hold]) -> int:
    """How many of the connections the app held (:func:`holds`) it never closed: for a pool, never gave back."""
    return sum(not hold.given_back for hold in held)


def most_checked_out(held: Sequence[Hold]) -> int:
    """The most connections the app held (:func:`holds`) at once."""
    changes = sorted(
        [(hold.out.time, 1) for hold in held] + [(hold.back.time, -1) for hold in held if hold.back is not None]
    )  # at one time a return sorts before a take: the pool lent the same connection on
    return max(itertools.accumulate(change for _, change in changes), default=0)


def traces_orm(trace: Iterable[TraceEvent]) -> bool:
    """Whether the app made a Peewee database or a SQLAlchemy pool: only then does its trace say what its
    connections did."""
    return any(event.kind == "database" for event in trace)


def shows_pool(trace: Iterable[TraceEvent]) -> bool:
    """Whether the app keeps its connections in a pool (which keeps those given back open)."""
    return any(event.kind == "database" and _POOLED.search(event.sql or "") for event in trace)


# Peewee's Pooled*Database; SQLAlchemy's pools (QueuePool, AsyncAdaptedQueuePool, SingletonThreadPool...) but NullPool.
_POOLED = re.compile(r"^(?!NullPool$).*Pool")
