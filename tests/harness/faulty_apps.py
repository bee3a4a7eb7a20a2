"""Test-only ASGI apps that fail the ways a build under test can; launched as variants.

uvicorn imports them inside the server process, from the repository, which :func:`variant`
names as the build's ``app_dir``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from harness.variant import Expectation, Variant
from tests.harness.runs import REPO

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def variant(name: str, *, expect: Expectation = "clean") -> Variant:
    """The app ``name`` of this module (or ``broken_import``) as a variant the launcher can start.

    By ``app_dir``, not ``PYTHONPATH``: a variable only a process's start reads would have
    its servers start cold, and a warm parent first started under it would start every
    later server of that pytest worker cold.
    """
    module = "tests.harness.broken_import" if name == "broken_import" else __name__
    attribute = "app" if name == "broken_import" else name
    return Variant(
        name=name, app=f"{module}:{attribute}", description=f"test app {name}", expect=expect, app_dir=str(REPO)
    )


async def crashes_at_startup(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """Fails its lifespan startup, as an app whose database is unreachable does; uvicorn exits."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "cannot reach the database (test app)"})


async def never_ready(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """Never finishes its lifespan startup: uvicorn never starts listening."""
    if scope["type"] == "lifespan":
        await receive()
        await asyncio.Event().wait()


async def hangs(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """Starts, then never answers a request."""
    if scope["type"] == "lifespan":
        await receive()  # startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    await asyncio.Event().wait()


HUGE_BODY_MB = 100


async def huge_bodies(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """Answers every request 200 with a 100 MB body, streamed a MiB at a time so the server never holds it."""
    if scope["type"] == "lifespan":
        await receive()  # startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    chunk = b"x" * 2**20
    length = HUGE_BODY_MB * len(chunk)
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(length).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for _ in range(HUGE_BODY_MB - 1):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": chunk})


not_asgi = 42  # a typo'd app = "module:not_asgi": nothing uvicorn could call


def returns_not_asgi() -> object:
    """A factory (factory = true) that returns no app."""
    return None
