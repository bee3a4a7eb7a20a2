"""The tracer's SQLAlchemy hooks, each run in a fresh interpreter as a server runs them: installed before the app
imports SQLAlchemy, and never importing it for an app that does not."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

from harness.server.sqlalchemy_hooks import SUPPORTED, CannotTrace, _hook_core, supported

INSTALL = """
import io, sys
from harness.server import sqlalchemy_hooks, tracer
out = io.BytesIO()
traced = tracer.Tracer(out)
tracer.install(traced)
sqlalchemy_hooks.install(traced)
"""


def traced(script: str, tmp_path: Path) -> tuple[list[dict[str, Any]], str]:
    """The trace events ``script`` left, run after the tracer's install (its ``out``), and what it printed."""
    code = INSTALL + textwrap.dedent(script) + "\nprint('TRACE' + out.getvalue().decode())\n"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    printed, _, trace = done.stdout.partition("TRACE")
    return [json.loads(line) for line in trace.splitlines() if line.strip()], printed


def test_a_peewee_app_never_imports_sqlalchemy(tmp_path: Path) -> None:
    events, printed = traced(
        """
        import peewee
        peewee.SqliteDatabase(":memory:")
        print("sqlalchemy" in sys.modules, type(sys.meta_path[0]).__name__)
        """,
        tmp_path,
    )
    assert printed.split() == ["False", "_Watcher"]  # still only watching
    assert [e["kind"] for e in events] == ["database"]


def test_pools_engines_and_sessions_are_traced_per_request_with_numbered_connections_and_sessions(
    tmp_path: Path,
) -> None:
    events, _ = traced(
        """
        import gc, warnings
        from sqlalchemy import create_engine, text
        from sqlalchemy.orm import Session
        engine = create_engine("sqlite:///app.db")
        tracer.current_request.set("r1")
        with Session(engine) as session:
            session.execute(text("SELECT 1"))
        tracer.current_request.set("r2")
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT missing FROM nowhere"))
        except Exception:
            pass
        tracer.current_request.set("r3")
        kept = engine.connect()  # never given back: the garbage collector returns it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            del kept
            gc.collect()
        """,
        tmp_path,
    )
    kinds = [(e["kind"], e["request_id"]) for e in events]
    assert kinds[0] == ("database", None) and events[0]["sql"] == "QueuePool"
    assert kinds[1:] == [
        ("session", "r1"),
        ("pool-connect", "r1"),
        ("checkout", "r1"),
        ("begin", "r1"),
        ("session-begin", "r1"),
        ("session-call", "r1"),
        ("checkin", "r1"),
        ("session-end", "r1"),
        ("session-close", "r1"),
        ("checkout", "r2"),
        ("begin", "r2"),
        ("db-error", "r2"),
        ("checkin", "r2"),
        ("checkout", "r3"),
        ("checkin", "r3"),
    ]
    assert [e["sql"] for e in events if e["kind"] == "session-call"] == ["execute"]  # its own flush is part of it
    by_kind = {e["kind"]: e for e in events}
    assert {e.get("connection") for e in events if e["kind"] in ("checkout", "checkin", "begin")} == {1}
    assert by_kind["session-begin"] == {**by_kind["session-begin"], "session": 1, "connection": 1}
    assert by_kind["session-close"]["start"] <= by_kind["session-close"]["time"]
    assert by_kind["db-error"]["error"].startswith("OperationalError: no such") and by_kind["db-error"]["sql"] == (
        "SELECT nowhere"
    )
    assert [e["auto"] for e in events if e["kind"] == "checkin"] == [False, False, True]  # the last by the collector
    assert all(e["thread"] == 0 and e["task"] is None for e in events)  # no event loop runs


def test_a_session_call_made_inside_another_is_written_only_when_it_raised(tmp_path: Path) -> None:
    events, _ = traced(
        """
        from sqlalchemy import Column, Integer, create_engine
        from sqlalchemy.orm import Session, declarative_base
        Row = type("Row", (declarative_base(),), {"__tablename__": "row", "id": Column(Integer, primary_key=True)})
        engine = create_engine("sqlite://")
        Row.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Row(id=1))
            session.commit()  # flushes: one event, the commit's
            session.add(Row(id=1))
            try:
                session.commit()  # its flush raises: the flush and the commit, each with the error
            except Exception:
                session.rollback()
        """,
        tmp_path,
    )
    calls = [(e["sql"], e.get("error", "")[:14]) for e in events if e["kind"] == "session-call"]
    assert calls == [
        ("add", ""),
        ("commit", ""),
        ("add", ""),
        ("flush", "IntegrityError"),
        ("commit", "IntegrityError"),
        ("rollback", ""),
    ]
    flush, commit = (e for e in events if e["kind"] == "session-call" and e.get("error"))
    assert commit["start"] <= flush["start"] <= flush["time"] <= commit["time"]


def test_asyncio_events_carry_their_request_and_their_task(tmp_path: Path) -> None:
    events, _ = traced(
        """
        import asyncio
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

        async def request(engine, request_id):
            tracer.current_request.set(request_id)
            async with AsyncSession(engine) as session:
                await session.execute(text("SELECT 1"))

        async def main():
            engine = create_async_engine("sqlite+aiosqlite:///app.db")
            await asyncio.gather(request(engine, "a"), request(engine, "b"))
            await engine.dispose()

        asyncio.run(main())
        """,
        tmp_path,
    )
    calls = [e for e in events if e["kind"] == "session-call"]
    assert {e["request_id"] for e in calls} == {"a", "b"}
    tasks = {e["request_id"]: e["task"] for e in calls}
    assert None not in tasks.values() and tasks["a"] != tasks["b"]  # each request's own task, numbered
    assert all(e["thread"] == 0 for e in events)
    assert {e["request_id"] for e in events if e["kind"] in ("checkout", "session-begin")} == {"a", "b"}


def test_an_app_that_imported_sqlalchemy_before_the_tracer_is_hooked_at_once(tmp_path: Path) -> None:
    code = (
        "import sqlalchemy, sqlalchemy.orm, io\n"
        "from harness.server import sqlalchemy_hooks, tracer\n"
        "out = io.BytesIO(); sqlalchemy_hooks.install(tracer.Tracer(out))\n"
        "sqlalchemy.create_engine('sqlite://').connect().close()\n"
        "print(out.getvalue().count(b'checkout'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["1"], done.stderr


@pytest.mark.parametrize(
    ("version", "hooked"),
    [("1.3.24", False), ("0.9.8", False), ("1.4.0", True), ("1.4.54", True), ("2.0.36", True), ("2.1.0b1", True)],
)
def test_sqlalchemy_14_and_later_are_supported(version: str, hooked: bool) -> None:
    assert supported(version) is hooked


def test_an_old_sqlalchemy_stops_the_apps_import_with_the_versions_supported() -> None:
    old = types.ModuleType("sqlalchemy")
    old.__version__ = "1.3.24"  # type: ignore[attr-defined]
    with pytest.raises(CannotTrace) as raised:
        _hook_core(None, old)  # type: ignore[arg-type]  # raises before it touches the tracer
    assert str(raised.value) == (
        f"the app uses SQLAlchemy 1.3.24, which the trace cannot hook: it supports {SUPPORTED} "
        "(upgrade SQLAlchemy, or run with --no-trace)"
    )
