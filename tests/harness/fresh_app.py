"""A test-only build that reports what its server process holds, when it is imported and on its first request.

Launched as a variant with the repository as its ``app_dir``; ``FRESH_DATABASE`` names its
Peewee database. What it holds is read from the process itself: its threads, every
sqlite3 connection object alive, its open descriptors, its parent, and which frameworks
were already imported before this module imported any.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
import sys
import threading
from typing import Any

FRAMEWORKS = ("fastapi", "peewee", "pydantic", "starlette", "uvicorn")
ALREADY_IMPORTED = [name for name in FRAMEWORKS if name in sys.modules]

import peewee  # noqa: E402 - after the look at what the process had already imported
from fastapi import FastAPI  # noqa: E402

db = peewee.SqliteDatabase(os.environ["FRESH_DATABASE"])


def holdings() -> dict[str, Any]:
    return {
        "threads": [thread.name for thread in threading.enumerate()],
        "sqlite_connections": sum(isinstance(obj, sqlite3.Connection) for obj in gc.get_objects()),
        "database_closed": db.is_closed(),
        "descriptors": descriptors(),
    }


def descriptors() -> list[str]:
    """What each open descriptor is, in the order of their numbers; not the one that listed them."""
    found = []
    for fd in sorted(map(int, os.listdir("/proc/self/fd"))):
        with contextlib.suppress(FileNotFoundError):  # the listing's own, closed since
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
    return found


AT_IMPORT = holdings()
app = FastAPI()


@app.get("/holdings")
async def first_request() -> dict[str, Any]:  # async: run on the event loop, so no worker thread starts for it
    return {
        "at_import": AT_IMPORT,
        "at_first_request": holdings(),
        "already_imported": ALREADY_IMPORTED,
        "database": db.database,
        "parent": os.getppid(),
        "session_leader": os.getsid(0) == os.getpid(),
    }
