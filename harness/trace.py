"""Read a server's trace (written by :mod:`harness.server.tracer`) into the results' terms."""

from __future__ import annotations

from collections.abc import Iterable
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


def unclosed_connections(trace: Iterable[TraceEvent]) -> int:
    """How many connections the app opened and never closed: for a pool, never gave back (numbers are per open)."""
    opened, closed = set(), set()
    for event in trace:
        if event.kind == "connect" and event.error is None:
            opened.add(event.connection)
        elif event.kind == "close":
            closed.add(event.connection)
    return len(opened - closed)


def uses_peewee(trace: Iterable[TraceEvent]) -> bool:
    """Whether the app made a Peewee database: only then does its trace say what its connections did."""
    return any(event.kind == "database" for event in trace)
