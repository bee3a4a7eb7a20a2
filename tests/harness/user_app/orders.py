"""A user's own small orders API, in three builds, for the harness's end-to-end tests.

Not part of the test package: the tests copy this folder into a temporary project and
declare its builds in a harness.toml there, as a user does. Each server keeps its orders
in the JSON file ``ORDERS_DB`` names (the tests put it in the server's ``{tmp}``).

- ``broken``: listing goes through one module-level "connection" shared by every worker
  thread, without a lock; a request that finds it in use raises, so overlapping requests
  end in HTTP 500.
- ``fixed``: each request opens its own connection; clean under any concurrency.
- ``hangs``: listing waits for a restock that never comes; it gives up only when the
  client hangs up, so a stopping server has no request left to wait for.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

HOLD_SECONDS = 0.2  # how long a listing keeps its connection: long enough for requests to overlap


class Connection:
    """A stand-in for a database connection that must never serve two requests at once."""

    def __init__(self) -> None:
        self.in_use = False

    def open(self) -> None:
        if self.in_use:
            raise RuntimeError("connection already in use by another request")
        self.in_use = True

    def close(self) -> None:
        self.in_use = False


def _database() -> Path:
    return Path(os.environ["ORDERS_DB"])


def _read() -> list[dict[str, Any]]:
    path = _database()
    return json.loads(path.read_text()) if path.exists() else []


def make_app(build: str) -> FastAPI:
    app = FastAPI(title=f"orders ({build})")
    shared = Connection()
    writing = threading.Lock()
    restocked = asyncio.Event()  # set by nothing

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "build": build}

    @app.post("/orders/", status_code=201)
    def create_order(order: dict[str, Any]) -> dict[str, Any]:
        with writing:
            orders = _read()
            orders.append({"id": len(orders) + 1, **order})
            _database().write_text(json.dumps(orders))
        return orders[-1]

    if build == "hangs":

        @app.get("/orders/")
        async def list_orders(request: Request) -> list[dict[str, Any]]:
            while not restocked.is_set():
                if await request.is_disconnected():
                    break
                await asyncio.sleep(0.05)
            return _read()

    else:

        @app.get("/orders/")
        def list_orders() -> list[dict[str, Any]]:
            connection = shared if build == "broken" else Connection()  # the whole difference
            connection.open()
            try:
                time.sleep(HOLD_SECONDS)
                return _read()
            finally:
                connection.close()

    return app


broken = make_app("broken")
fixed = make_app("fixed")
hangs = make_app("hangs")
