"""A test-only build whose text is hostile: huge, or full of terminal escape sequences.

Launched as a variant with the repository as its ``app_dir``. ``HOSTILE_MESSAGE`` picks
the text (:data:`MESSAGES`); ``HOSTILE_AT`` says where it goes: ``import`` raises it as the
module imports, ``startup`` prints it as one line then fails the lifespan startup (uvicorn
exits, its log the only account), ``request`` raises it on every request but ``/ok`` (a 500).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

HUGE = 50_000_000  # characters
ESCAPES = "\x1b[2J\x1b]0;pwned\x07 hidden\rshown \x9b31m"  # clear screen, retitle, carriage return, C1 CSI
MESSAGES: dict[str, Callable[[], str]] = {"huge": lambda: "y" * HUGE, "escapes": lambda: ESCAPES}

# A scenario for it: a seed step it answers, then requests that raise.
SCENARIO = """\
[[seed]]
method = "POST"
path = "/ok"

[schedule]
kind = "burst"
requests = 2

[schedule.request]
path = "/boom"
"""

AT = os.environ.get("HOSTILE_AT", "")  # unset where a test imports it for SCENARIO
MESSAGE = MESSAGES[os.environ["HOSTILE_MESSAGE"]]() if AT else ""

if AT == "import":
    raise RuntimeError(MESSAGE)
if AT == "startup":
    print(MESSAGE, flush=True)


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        if AT == "startup":
            await send({"type": "lifespan.startup.failed", "message": "the test app fails its startup"})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] != "/ok":
        raise RuntimeError(MESSAGE)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})
