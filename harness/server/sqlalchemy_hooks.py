"""The tracer's hooks on SQLAlchemy, installed when the app first imports it and never otherwise.

When the app has imported ``sqlalchemy`` (then ``sqlalchemy.orm``), :func:`install` listens to it
(:func:`harness.server.imports.when_imported`) through SQLAlchemy's own event API, class-wide, so
every engine, pool and session the app makes is covered:

- each pool the app makes (a ``database`` event naming its class, as Peewee's database);
- the pool's ``connect`` (a new DBAPI connection; the pool's connections are numbered per
  pool slot, its ``_ConnectionRecord``, kept in ``record_info``), ``checkout``, ``checkin``
  (``auto`` when the garbage collector made it for a connection the app never gave back, or
  detached it, on asyncio),
  ``invalidate`` and ``close``; a checkout that raised (``QueuePool limit ... reached``);
- the engine's ``begin`` and ``handle_error`` (``db-error``, with the statement's head);
- each ``Session`` made (``AsyncSession`` makes one, ``scoped_session`` too), numbered in the
  order made, kept in its ``info``; its ``after_begin`` (with the connection it took) and
  ``after_transaction_end``; and its calls (:data:`SESSION_CALLS`: ``execute()``, ``commit()``,
  ``close()``...), each timed from its start, with what it raised (a call one of them makes on
  its own session, as ``execute()`` flushes, only when it raised).

Under explore mode the session's calls (but ``add()`` and ``delete()``) and the pool's checkout
and checkin are also scheduling points: each calls :func:`harness.server.explorer.point` first.

The tracer adds the request, the thread and the asyncio task: SQLAlchemy's asyncio layer runs
the sync code in a greenlet inside the request's task, with the task's context, so the request
id and the task reach every event. A Peewee app never imports SQLAlchemy through the tracer.

SQLAlchemy 1.4 and 2.x are supported; an older one stops the app's import with
:class:`CannotTrace`, which the probe reports as the app's start-up failure.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import re
import sys
import types
from collections.abc import Callable
from typing import Any

from harness.server import explorer, imports
from harness.server.tracer import Tracer, bounded, sql_head

SUPPORTED = "SQLAlchemy 1.4 and 2.x"
_NUMBER = "harness_connection"  # in a pool slot's record_info and a session's info
_GC_DEPTH = 6  # frames between SQLAlchemy's _finalize_fairy and a checkin listener: 3 in 1.4 and 2.x


class CannotTrace(Exception):
    """The app's SQLAlchemy cannot be hooked: too old, or without the event API the tracer listens to."""


def install(tracer: Tracer) -> None:
    """Hook the app's SQLAlchemy when it imports it (at once if something imported it already)."""
    imports.when_imported(
        {"sqlalchemy": functools.partial(_hook_core, tracer), "sqlalchemy.orm": functools.partial(_hook_orm, tracer)}
    )


def supported(version: str) -> bool:
    numbers = [int(part) for part in re.findall(r"\d+", version)[:2]]
    return len(numbers) == 2 and (numbers[0], numbers[1]) >= (1, 4)


def _hook_core(tracer: Tracer, sqlalchemy: types.ModuleType) -> None:
    version = str(getattr(sqlalchemy, "__version__", "?"))
    if not supported(version):
        raise CannotTrace(
            f"the app uses SQLAlchemy {version}, which the trace cannot hook: it supports {SUPPORTED} "
            "(upgrade SQLAlchemy, or run with --no-trace)"
        )
    try:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.pool import Pool

        _listen_core(tracer, event.listen, Pool, Engine)
    except (ImportError, AttributeError, LookupError, TypeError) as exc:
        raise CannotTrace(
            f"the trace cannot hook the app's SQLAlchemy {version} ({type(exc).__name__}: {exc}): "
            f"it supports {SUPPORTED}"
        ) from exc


def _listen_core(tracer: Tracer, listen: Callable[..., None], pool: Any, engine: Any) -> None:
    slots = itertools.count(1)
    init, connect = pool.__init__, pool.connect

    @functools.wraps(init)
    def traced_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        tracer.event("database", sql=type(self).__name__)  # the app uses SQLAlchemy: its trace means something

    @functools.wraps(connect)
    def traced_connect(self: Any) -> Any:
        explorer.point("checkout")
        try:
            return connect(self)
        except Exception as exc:  # QueuePool's "limit of size 5 overflow 10 reached", a refused connection...
            tracer.event("checkout", connection=None, error=bounded(f"{type(exc).__name__}: {exc}"))
            raise

    pool.__init__, pool.connect = traced_init, traced_connect

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        record.record_info[_NUMBER] = number = next(slots)
        tracer.event("pool-connect", connection=number)

    listen(pool, "connect", on_connect)
    listen(pool, "checkout", lambda _c, record, _p: tracer.event("checkout", connection=_slot(record)))

    def on_checkin(_c: Any, record: Any) -> None:
        auto = _by_gc()
        if not auto:  # the garbage collector's clean-up runs wherever it struck: no place to pause
            explorer.point("checkin")  # the connection goes back to the pool once this returns
        tracer.event("checkin", connection=_slot(record), auto=auto)

    listen(pool, "checkin", on_checkin)
    listen(
        pool,
        "invalidate",
        lambda _c, record, exc: tracer.event(
            "invalidate", connection=_slot(record), error=bounded(f"{type(exc).__name__}: {exc}") if exc else None
        ),
    )
    listen(pool, "close", lambda _c, record: tracer.event("pool-close", connection=_slot(record)))

    def on_detach(_c: Any, record: Any) -> None:
        if _by_gc():  # an asyncio pool's connection the garbage collector found: detached and dropped, not checked in
            tracer.event("checkin", connection=_slot(record), auto=True)

    listen(pool, "detach", on_detach)
    listen(engine, "begin", lambda conn: tracer.event("begin", connection=_connection_of(conn)))

    def on_error(context: Any) -> None:
        original = context.original_exception
        tracer.event(
            "db-error",
            connection=_connection_of(context.connection),
            error=bounded(f"{type(original).__name__}: {original}"),
            sql=sql_head(context.statement or ""),
        )

    listen(engine, "handle_error", on_error)


def _hook_orm(tracer: Tracer, orm: types.ModuleType) -> None:
    try:
        from sqlalchemy import event

        _listen_orm(tracer, event.listen, orm.Session)
    except (ImportError, AttributeError, LookupError, TypeError) as exc:
        raise CannotTrace(
            f"the trace cannot hook the app's SQLAlchemy sessions ({type(exc).__name__}: {exc}): "
            f"it supports {SUPPORTED}"
        ) from exc


def _listen_orm(tracer: Tracer, listen: Callable[..., None], session: Any) -> None:
    numbers = itertools.count(1)
    init = session.__init__

    @functools.wraps(init)
    def traced_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.info[_NUMBER] = number = next(numbers)
        tracer.event("session", session=number)

    session.__init__ = traced_init
    for name in SESSION_CALLS:
        if hasattr(session, name):  # 1.4's first releases have no scalars()
            setattr(session, name, _timed(tracer, name, getattr(session, name)))
    listen(
        session,
        "after_begin",
        lambda s, _t, conn: tracer.event("session-begin", session=_session(s), connection=_connection_of(conn)),
    )

    def on_transaction_end(s: Any, transaction: Any) -> None:
        if transaction.parent is None:  # the session's own, not a savepoint or a subtransaction
            tracer.event("session-end", session=_session(s))

    listen(session, "after_transaction_end", on_transaction_end)


# The Session's calls traced, each from its start to its end: those a request makes on a session it got from
# elsewhere (a scoped_session's, a shared one) before any event of SQLAlchemy's own fires, and the ones that
# raise when two requests use one session at once (IllegalStateChangeError, PendingRollbackError...).
SESSION_CALLS = ("add", "delete", "execute", "scalar", "scalars", "get", "flush", "commit", "rollback", "close")
# Those that are explore mode's scheduling points (harness.server.explorer): the ones that reach the database or end
# the session's transaction; add() and delete() touch only the session's own memory.
SESSION_POINTS = frozenset(SESSION_CALLS) - {"add", "delete"}


# The session whose traced call runs, in the call's context (a thread-pool job's, or a task's, which SQLAlchemy's
# greenlets share): a call it makes on itself (execute()'s autoflush, commit()'s flush) is part of the outer
# call's time, and written only if it raised, which saves an event per request.
_calling: contextvars.ContextVar[object] = contextvars.ContextVar("harness_session_call", default=None)


def _timed(tracer: Tracer, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    kind = "session-close" if name == "close" else "session-call"
    pauses = name in SESSION_POINTS

    @functools.wraps(call)
    def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        if pauses:
            explorer.point(name)
        token = None if _calling.get() is self else _calling.set(self)
        start = tracer.now()
        try:
            result = call(self, *args, **kwargs)
        except Exception as exc:
            error = bounded(f"{type(exc).__name__}: {exc}")
            tracer.event(kind, start=start, session=_session(self), sql=name, error=error)
            raise
        finally:
            if token is not None:
                _calling.reset(token)
        if token is not None:
            tracer.event(kind, start=start, session=_session(self), sql=name)
        return result

    return traced


def _slot(record: Any) -> int | None:
    return record.record_info.get(_NUMBER) if record is not None else None


def _session(session: Any) -> int | None:
    return session.info.get(_NUMBER)  # type: ignore[no-any-return]


def _connection_of(conn: Any) -> int | None:
    """The pool slot of a ``Connection``'s DBAPI connection, if it still has one."""
    fairy = getattr(conn, "_dbapi_connection", None)
    return _slot(getattr(fairy, "_connection_record", None))


def _by_gc() -> bool:
    """Whether this checkin is SQLAlchemy's clean-up of a connection the garbage collector found still checked out.

    The event says nothing of it; SQLAlchemy's ``_finalize_fairy`` knows (``is_gc_cleanup`` in 2.x, a
    weak reference ``ref`` in 1.4), a few frames up.
    """
    frame = sys._getframe(2)
    for _ in range(_GC_DEPTH):
        if frame is None:
            return False
        if frame.f_code.co_name == "_finalize_fairy":
            local = frame.f_locals
            return bool(local.get("is_gc_cleanup") or local.get("ref") is not None)
        frame = frame.f_back  # type: ignore[assignment]
    return False
