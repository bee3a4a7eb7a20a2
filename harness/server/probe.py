"""The harness's probe, loaded inside each launched server process.

uvicorn starts ``harness.probe:create_app`` as a factory; it imports the variant's app
(``HARNESS_PROBE_APP``, called first when ``HARNESS_PROBE_FACTORY`` is set) and wraps it.
Every exception that leaves the app is written, with the request id the runner sent, as
one JSON line to ``HARNESS_PROBE_EVENTS`` (its message cut to ``tracer.MESSAGE_LIMIT``
characters, its traceback to ``TRACEBACK_LIMIT``) and then re-raised, so uvicorn behaves exactly
as it would without the probe. When ``HARNESS_PROBE_TRACE`` names a file,
:mod:`harness.server.tracer` also records each request's connection events and phases there,
keyed by the same id. With ``HARNESS_PROBE_EXPLORE=1``, :mod:`harness.server.explorer` owns the
thread pool's schedule: the probe answers its two control paths itself (they never reach the
app) and tells it when each request arrives and ends. An app that does not import, or is not
an ASGI app (nothing uvicorn could call), is described in one line in
``HARNESS_PROBE_STARTUP_FAILURE``, for the harness to tell its user. The app itself is not edited.

Standard library only (the tracer imports Starlette and, once the app does, Peewee or SQLAlchemy, which the app
brings): the probe must import wherever the app under test runs.
"""

from __future__ import annotations

import importlib
import json
import os
import time
import traceback
import typing
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TextIO

from harness.server import explorer, sqlalchemy_hooks, tracer

REQUEST_ID_HEADER = "x-harness-request-id"
TRACEBACK_LIMIT = 20_000  # characters kept of a traceback (its start and its end): one holds its message too
CONTROL_BODY_LIMIT = 1 << 20  # bytes of an explore control request read; a begin of 1,000 ids is far below

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class ExceptionProbe:
    """ASGI middleware that records each unhandled exception against its request id."""

    def __init__(self, app: ASGIApp, events: TextIO, *, dispatcher: explorer.Explorer | None = None) -> None:
        self.app = app
        self.events = events
        self.dispatcher = dispatcher

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.dispatcher is not None and scope["path"] in (explorer.BEGIN_PATH, explorer.END_PATH):
            await self._control(self.dispatcher, scope, receive, send)
            return
        request_id = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        sent_status: int | None = None

        async def send_and_note_status(message: Message) -> None:
            nonlocal sent_status
            if message["type"] == "http.response.start":
                sent_status = message["status"]
            await send(message)

        tracer.current_request.set(request_id)
        tracer.current_scope.set(scope)
        armed = self.dispatcher.arrive(request_id) if self.dispatcher is not None else None
        try:
            await self.app(scope, receive, send_and_note_status)
        except Exception as exc:
            self._record(request_id, scope, exc, sent_status)
            raise
        finally:
            if armed is not None:
                armed.leave(sent_status)

    async def _control(
        self,
        dispatcher: explorer.Explorer,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        """Answer a begin or an end of an explored schedule."""
        body = await _body(receive, CONTROL_BODY_LIMIT)
        if scope["method"] != "POST":
            status, answer = 405, {"error": f"{scope['path']} takes POST"}
        elif body is None:
            status, answer = 413, {"error": f"the body is over {CONTROL_BODY_LIMIT:,} bytes"}
        elif scope["path"] == explorer.BEGIN_PATH:
            status, answer = dispatcher.begin(body)
        else:
            status, answer = await dispatcher.end(body)
        content = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _record(self, request_id: str, scope: Scope, exc: Exception, sent_status: int | None) -> None:
        event = {
            "request_id": request_id,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "time": time.time(),
            "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "message": tracer.bounded(str(exc)),
            "traceback": tracer.bounded("".join(traceback.format_exception(exc)), TRACEBACK_LIMIT),
            "response_status": sent_status,
        }
        self.events.write(json.dumps(event) + "\n")
        self.events.flush()


def create_app() -> ExceptionProbe:
    """uvicorn factory: the app named by ``HARNESS_PROBE_APP``, wrapped in the probe."""
    dispatcher = explorer.Explorer() if os.environ.get("HARNESS_PROBE_EXPLORE") == "1" else None
    if dispatcher is not None:  # first: the tracer then wraps the dispatcher, and times the calls it runs
        try:
            dispatcher.install()
        except explorer.CannotExplore as exc:
            _startup_failure(str(exc))
            raise
    if os.environ.get("HARNESS_PROBE_TRACE"):
        trace = open(os.environ["HARNESS_PROBE_TRACE"], "ab", buffering=0)  # noqa: SIM115 - as events below
        traced = tracer.Tracer(trace)
        tracer.install(traced)
        sqlalchemy_hooks.install(traced)
    elif dispatcher is not None:  # SQLAlchemy's hooks are explore mode's scheduling points: needed, if not their trace
        sqlalchemy_hooks.install(tracer.Tracer(open(os.devnull, "wb", buffering=0)))  # noqa: SIM115 - as above
    name = os.environ["HARNESS_PROBE_APP"]
    # Written first, emptied once the app is loaded: an app that ends the process as it loads
    # (os._exit, a crash in C) leaves no exception to catch, only this line.
    _startup_failure(f"app {name!r} ended its server's process as it loaded (os._exit, or a crash)")
    try:
        app = _load_app(name, factory=bool(os.environ.get("HARNESS_PROBE_FACTORY")))
    except NotAnApp as exc:
        _startup_failure(f"app {name!r} is not an ASGI app: {tracer.bounded(str(exc))}")
        raise
    except sqlalchemy_hooks.CannotTrace as exc:
        _startup_failure(f"app {name!r}: {exc}")
        raise
    except Exception as exc:
        _startup_failure(f"app {name!r} did not load: {type(exc).__name__}: {tracer.bounded(str(exc))}")
        raise
    except SystemExit as exc:  # sys.exit("DATABASE_URL is not set"): the app's own last word
        _startup_failure(f"app {name!r} exited as it loaded: {_exit_described(exc)}")
        raise
    except KeyboardInterrupt:  # the server has a session of its own: no Ctrl-C of the terminal reaches it
        _startup_failure(f"app {name!r} raised KeyboardInterrupt as it loaded")
        raise
    _startup_failure("")
    events = open(os.environ["HARNESS_PROBE_EVENTS"], "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the server
    return ExceptionProbe(app, events, dispatcher=dispatcher)


async def _body(receive: Callable[[], Awaitable[Message]], limit: int) -> bytes | None:
    """The request's body, or None once it is over ``limit`` bytes (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class NotAnApp(Exception):
    """What ``app =`` names is not an ASGI app, or with ``factory = true`` not a function that returns one."""


def _startup_failure(line: str) -> None:
    """Say why the server will not serve (an empty line: it will), in place of what was said before."""
    with open(os.environ["HARNESS_PROBE_STARTUP_FAILURE"], "w", encoding="utf-8") as failure:
        failure.write(line + "\n")


def _exit_described(exc: SystemExit) -> str:
    """``sys.exit("message")`` as its message; ``sys.exit(2)``, ``sys.exit()`` as the call."""
    if exc.code is None or isinstance(exc.code, int):
        return f"sys.exit({'' if exc.code is None else exc.code})"
    return tracer.bounded(str(exc.code))


def _load_app(name: str, *, factory: bool) -> ASGIApp:
    """The app; checked callable here, for uvicorn would only fail at the first request, which a build
    expected to fail would then count as failing as expected."""
    module_name, _, attribute = name.partition(":")
    app: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        app = getattr(app, part)
    if factory:
        if not callable(app):
            raise NotAnApp(f"factory = true, but it is {_described(app)}, not a function that returns the app")
        made = app()
        if not callable(made):
            raise NotAnApp(f"its factory returned {_described(made)}, which cannot be called")
        return typing.cast(ASGIApp, made)
    if not callable(app):
        raise NotAnApp(f"it is {_described(app)}, which cannot be called")
    return typing.cast(ASGIApp, app)


def _described(value: object) -> str:
    """``an int (42)``: the kind of a value and, cut to a line, the value."""
    text = " ".join(repr(value).split())
    kind = type(value).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return f"{article} {kind} ({text[:40] + '...' if len(text) > 40 else text})"
