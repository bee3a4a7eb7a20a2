"""The server-side trace: which worker thread did what with which Peewee connection, per request.

Loaded by the probe inside each launched server, before the app is imported, so the app
itself is never edited. Three kinds of hook:

- the probe's ASGI wrapper sets :data:`current_request` to the request id the runner sent;
  Starlette and anyio run sync code in worker threads inside a *copy* of the caller's
  context, so the id reaches every thread that works for the request;
- every sync job handed to the thread pool (``anyio.to_thread.run_sync``, or Starlette's
  ``run_in_threadpool`` on stacks older than anyio) is timed as a *phase*: a dependency's
  enter or exit, the endpoint, response validation;
- once the app imports Peewee (:mod:`harness.server.imports`), ``peewee.Database.connect``,
  ``execute_sql`` and ``close`` note the connection they opened, used or closed, numbered in
  the order opened, and whether ``connect()`` raised (then the number of the connection the
  state still held); a ``database`` event notes each Peewee database the app makes, so an app
  on another ORM shows as one.

Each event is one JSON line, written as it happens in one ``write(2)`` to an unbuffered file (so
a killed server loses none written), with ``time.perf_counter()`` times (one clock for every
process on the machine; the harness shifts them to the schedule's start). After
``DEFAULT_TRACE_LIMIT`` events one ``truncated`` line ends the file, so a long run cannot fill
the disk; a database error's text is kept to ``MESSAGE_LIMIT`` characters (:func:`bounded`), so
a huge one cannot either.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import itertools
import json
import re
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Protocol

from harness.server import imports

DEFAULT_TRACE_LIMIT = 50_000  # events per server process: about 500 requests of the tutorial's app
MESSAGE_LIMIT = 2_000  # characters kept of an exception's message (its start and its end), here and in the probe

# Set by the probe for each request: its id, and its ASGI scope, where the router notes the endpoint it chose.
current_request: contextvars.ContextVar[str | None] = contextvars.ContextVar("harness_request", default=None)
current_scope: contextvars.ContextVar[MutableMapping[str, Any] | None] = contextvars.ContextVar(
    "harness_scope", default=None
)


class Sink(Protocol):
    """Where the events go: a file opened unbuffered in a server, a ``BytesIO`` in tests."""

    def write(self, data: bytes, /) -> int: ...


class _ThreadState(threading.local):
    """What a thread is doing; class-level defaults, as a missing attribute of a thread-local is slow to look up."""

    phase: str | None = None  # the thread-pool job it runs
    in_query = False  # inside Peewee's execute_sql


class Tracer:
    """Writes trace events for one server process; every method is safe to call from any thread."""

    def __init__(self, file: Sink, *, limit: int = DEFAULT_TRACE_LIMIT) -> None:
        self._file = file  # unbuffered: each event is one write(2), kept by the kernel if the server is killed
        self._limit = limit
        self._written = 0
        self._lock = threading.Lock()
        self._threads: dict[int, int] = {threading.get_ident(): 0}  # 0: the event loop's thread
        # Weak: a long run's finished tasks go; so a count, not the dictionary's size, numbers them.
        self._tasks: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = weakref.WeakKeyDictionary()
        self._task_numbers = itertools.count(1)
        self._connections: dict[int, tuple[int, object]] = {}  # id(conn) -> (number, conn kept alive)
        self._numbers = itertools.count(1)
        self._local = _ThreadState()
        self._texts: dict[str | None, str] = {}  # what _text made; about one per request

    def event(self, kind: str, **fields: Any) -> None:
        """Write one event: ``kind`` and ``fields`` (their names and ``kind`` are the hooks' own words, never
        escaped; their values plain: text, numbers, booleans, None), with its request, thread, task, time and phase.
        """
        with self._lock:
            if self._written > self._limit:
                return
            thread = self._threads.setdefault(threading.get_ident(), len(self._threads))
            now = time.perf_counter()
            self._written += 1
            if self._written > self._limit:
                line = f'{{"kind":"truncated","time":{now!r}}}\n'
            else:
                # By hand, in a fixed order: json.dumps of a dict was a third of an event's cost (docs/measurements.md).
                request, phase = current_request.get(), self._local.phase
                line = (
                    f'{{"kind":"{kind}","request_id":{self._texts.get(request) or self._text(request)},'
                    f'"thread":{thread},"task":{_json(self._task() if thread == 0 else None)},"time":{now!r},'
                    f'"phase":{self._texts.get(phase) or self._text(phase)}'
                )
                for name, value in fields.items():
                    line += f',"{name}":{_json(value)}'
                line += "}\n"
            self._file.write(line.encode())

    def _text(self, value: str | None) -> str:
        """A request id or a phase as JSON: each is in many events, and escaped once."""
        text = self._texts[value] = _json(value)
        return text

    def _task(self) -> int | None:
        """The running asyncio task's number, from 1 in the order first seen; None outside any task."""
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no event loop runs (yet) in this thread: the app's import
            return None
        if task is None:
            return None
        number = self._tasks.get(task)
        if number is None:
            number = self._tasks[task] = next(self._task_numbers)
        return number

    def opened(self, conn: object) -> int:
        with self._lock:
            number = next(self._numbers)
            self._connections[id(conn)] = (number, conn)
            return number

    def number(self, conn: object | None, *, forget: bool = False) -> int | None:
        if conn is None:
            return None
        with self._lock:
            entry = self._connections.pop(id(conn), None) if forget else self._connections.get(id(conn))
        return entry[0] if entry else None

    @staticmethod
    def now() -> float:
        """The trace's clock, for an event's ``start``."""
        return time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a thread-pool job; events inside it carry its name."""
        start = time.perf_counter()
        self._local.phase = name
        try:
            yield
        finally:
            self._local.phase = None
            self.event("phase", start=start, phase=name)

    @property
    def in_query(self) -> bool:
        return self._local.in_query

    @contextlib.contextmanager
    def query(self) -> Iterator[None]:
        self._local.in_query = True
        try:
            yield
        finally:
            self._local.in_query = False


def install(tracer: Tracer) -> None:
    """Hook the thread pool, and Peewee once the app imports it; call before the app (and FastAPI) is imported.

    SQLAlchemy is hooked apart, also only once the app imports it (:mod:`harness.server.sqlalchemy_hooks`).
    """
    imports.when_imported({"peewee": functools.partial(_hook_peewee, tracer)})
    _hook_thread_pool(tracer)


def _hook_peewee(tracer: Tracer, peewee: types.ModuleType) -> None:
    if not isinstance(getattr(peewee, "Database", None), type):  # the app's own module named peewee, not the ORM
        return
    database: Any = peewee.Database  # untyped; its methods are replaced below
    init, connect, execute_sql, close = database.__init__, database.connect, database.execute_sql, database.close

    @functools.wraps(init)
    def traced_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        tracer.event("database", sql=type(self).__name__)  # the app uses Peewee: its trace means something

    @functools.wraps(connect)
    def traced_connect(self: Any, *args: Any, **kwargs: Any) -> Any:
        held = None if self._state.closed else self._state.conn
        try:
            opened = connect(self, *args, **kwargs)
        except Exception as exc:
            tracer.event("connect", connection=tracer.number(held), error=bounded(str(exc)), auto=tracer.in_query)
            raise
        if opened:
            tracer.event("connect", connection=tracer.opened(self._state.conn), error=None, auto=tracer.in_query)
        return opened

    @functools.wraps(execute_sql)
    def traced_execute_sql(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        with tracer.query():
            try:
                cursor = execute_sql(self, sql, *args, **kwargs)
            except Exception as exc:
                held = None if self._state.closed else self._state.conn
                tracer.event("query", connection=tracer.number(held), sql=sql_head(sql), error=bounded(str(exc)))
                raise
        tracer.event("query", connection=tracer.number(self._state.conn), sql=sql_head(sql), error=None)
        return cursor

    @functools.wraps(close)
    def traced_close(self: Any, *args: Any, **kwargs: Any) -> Any:
        held = None if self._state.closed else self._state.conn
        try:
            return close(self, *args, **kwargs)
        finally:
            tracer.event("close", connection=tracer.number(held, forget=True))

    database.__init__ = traced_init
    database.connect, database.execute_sql, database.close = traced_connect, traced_execute_sql, traced_close


def _hook_thread_pool(tracer: Tracer) -> None:
    import starlette.concurrency

    if hasattr(starlette.concurrency, "anyio"):  # Starlette >= 0.15: every sync job goes through anyio
        import anyio.to_thread

        run_sync = anyio.to_thread.run_sync

        async def traced_run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            return await run_sync(PhaseJob(tracer=tracer, func=func), *args, **kwargs)

        anyio.to_thread.run_sync = traced_run_sync  # type: ignore[assignment]
    else:  # Starlette 0.14 (the tutorial's era) hands jobs to the event loop's executor
        run_in_threadpool = starlette.concurrency.run_in_threadpool

        async def traced_run_in_threadpool(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            return await run_in_threadpool(PhaseJob(tracer=tracer, func=func), *args, **kwargs)

        starlette.concurrency.run_in_threadpool = traced_run_in_threadpool


@dataclasses.dataclass(frozen=True, kw_only=True)
class PhaseJob:
    """A thread-pool job timed as a phase: ``func`` run inside :meth:`Tracer.phase`.

    A class, not a closure, so the explorer, which runs the job, can name it by the call it wraps
    (:func:`traced_call`).
    """

    tracer: Tracer
    func: Callable[..., Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Runs in the worker thread, inside the copied context: the phase is named there,
        # where the endpoint the router chose is known.
        scope = current_scope.get()
        with self.tracer.phase(phase_name(self.func, scope.get("endpoint") if scope else None)):
            return self.func(*args, **kwargs)


def traced_call(func: Callable[..., Any]) -> Callable[..., Any]:
    """The call a thread-pool job makes: the one the tracer's job wraps, or the job itself."""
    return func.func if isinstance(func, PhaseJob) else func


def phase_name(func: Callable[..., Any], endpoint: Callable[..., Any] | None) -> str:
    """What a thread-pool job is, in the words of FastAPI's request handling."""
    while isinstance(func, functools.partial):
        called = func.keywords.get("function")  # FastAPI >= 0.12x wraps sync endpoints
        func = called if callable(called) else func.func
    owner = getattr(func, "__self__", None)
    name = getattr(func, "__name__", type(func).__name__)
    generator = getattr(owner, "gen", None)
    if name in ("__enter__", "__exit__") and generator is not None:
        step = "enter" if name == "__enter__" else "exit"
        return f"dependency {step} ({getattr(generator, '__name__', '?')})"
    if name == "validate" and owner is not None:
        return "response validation"
    if endpoint is not None and func is endpoint:
        return f"endpoint ({name})"
    return name


def _json(value: object) -> str:
    """A plain value as JSON: only text needs json.dumps's escaping; a time's repr is JSON (it is never NaN)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE|TABLE(?: IF NOT EXISTS)?)\s+"?(\w+)', re.IGNORECASE)


def sql_head(sql: str) -> str:
    """``SELECT item``: the statement and its table, enough to tell the queries of a request apart."""
    table = _TABLE.search(sql)
    return f"{sql.split(maxsplit=1)[0] if sql.strip() else ''} {table.group(1) if table else ''}".strip()


# An object's address in an error's text ("<Item at 0x7f80...>"), another in every process and for every object.
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")


def without_addresses(text: str) -> str:
    """``text`` with each object's address masked (``0x...``): the same failure of another object reads the same,
    so explore mode can replay it in a fresh server and the summary can count it as one."""
    return _ADDRESS.sub("0x...", text)


def bounded(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text``, or its start and end with the middle cut out and counted, if it is longer than ``limit``.

    An app's text goes into the records, the report and the terminal: one of 50 MB must not.
    """
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} ... (cut: {len(text) - 2 * half:,} characters) ... {text[-half:]}"
