"""A test-only build that starts processes of its own at import, as apps with workers or helpers do.

Launched as a variant with the repository as its ``app_dir``; it writes the pids of what it
started, one a line, to the file ``SPAWNING_PIDS`` names. One child ignores SIGTERM, as a
careless worker does. ``app`` stops on SIGTERM as uvicorn's apps do; ``stubborn`` never
finishes its lifespan shutdown, so only a kill ends its server.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(600,), daemon=True)
_worker.start()
_children = [
    subprocess.Popen(["sleep", "600"]),
    subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 600"]),
]
Path(os.environ["SPAWNING_PIDS"]).write_text("".join(f"{pid}\n" for pid in [_worker.pid, *(c.pid for c in _children)]))


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    await _serve(scope, receive, send, shutdown=True)


async def stubborn(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    await _serve(scope, receive, send, shutdown=False)


async def _serve(scope: MutableMapping[str, Any], receive: Receive, send: Send, *, shutdown: bool) -> None:
    if scope["type"] == "lifespan":
        await receive()  # startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown
        if not shutdown:
            await asyncio.Event().wait()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
