"""What one trace event costs inside a server: ``Tracer.event`` timed on its own, in an asyncio task.

Usage: python benchmarks/trace_event.py [EVENTS]   (default: 20000)

Writes EVENTS events of each of two shapes, a pool's checkout (one number) and a session's call (a
start time, a number and a name), to an unbuffered file as a server's tracer does, from inside an
asyncio task (so each looks its task up), five times; prints the fastest pass's microseconds per
event: the least disturbed by whatever else the machine runs. The trace's cost per request is this
times the events a request makes (``benchmarks/sqlalchemy_trace_overhead.py`` prints those).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from harness.server.tracer import Tracer, current_request

SHAPES = {"checkout": {"connection": 3}, "session-call": {"start": 1234.5, "session": 12, "sql": "execute"}}
PASSES = 5


async def timed(tracer: Tracer, kind: str, fields: dict[str, object], events: int) -> float:
    current_request.set("app-t1-schedule-17")
    fastest = float("inf")
    for _ in range(PASSES):
        start = time.perf_counter()
        for _ in range(events):
            tracer.event(kind, **fields)
        fastest = min(fastest, time.perf_counter() - start)
    return fastest / events * 1e6


def main(events: int) -> None:
    with tempfile.TemporaryDirectory() as out, open(Path(out) / "trace.jsonl", "ab", buffering=0) as file:
        tracer = Tracer(file, limit=len(SHAPES) * PASSES * events)
        for kind, fields in SHAPES.items():
            print(f"{kind:<13} {asyncio.run(timed(tracer, kind, fields, events)):.2f} µs per event")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
