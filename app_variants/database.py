"""The Peewee database and the tutorial's contextvars-backed connection state.

``APP_VARIANTS_DATABASE`` names the database: a SQLite file, as in the tutorial (default
``test.db``; ``sqlite:///PATH`` also), or a ``postgresql://`` URL. On PostgreSQL, ``APP_VARIANTS_POOL`` > 0 makes it
Peewee's ``PooledPostgresqlDatabase`` of that many connections, each request waiting at most
``APP_VARIANTS_POOL_TIMEOUT`` seconds for one, as production apps on PostgreSQL usually run.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote, urlsplit

import peewee
from playhouse.pool import PooledPostgresqlDatabase

DATABASE_NAME = os.environ.get("APP_VARIANTS_DATABASE", "test.db")
POOL_SIZE = int(os.environ.get("APP_VARIANTS_POOL", "0"))
POOL_TIMEOUT = float(os.environ.get("APP_VARIANTS_POOL_TIMEOUT", "5"))

db_state_default: dict[str, Any] = {"closed": None, "conn": None, "ctx": None, "transactions": None}
# As the tutorial wrote it: one default dict shared by every context that never set its own.
db_state: ContextVar[dict[str, Any]] = ContextVar("db_state", default=db_state_default.copy())  # noqa: B039


class PeeweeConnectionState(peewee._ConnectionState):
    """Peewee's connection state kept in a context variable instead of a ``threading.local``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__setattr__("_state", db_state)
        super().__init__(**kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        self._state.get()[name] = value

    def __getattr__(self, name: str) -> Any:
        return self._state.get()[name]


def _database(name: str) -> peewee.Database:
    if not name.startswith(("postgresql://", "postgres://")):
        return peewee.SqliteDatabase(name.removeprefix("sqlite:///"), check_same_thread=False)
    url = urlsplit(name)
    params = {
        "host": url.hostname,
        "port": url.port,
        "user": url.username and unquote(url.username),
        "password": url.password and unquote(url.password),
    }
    if POOL_SIZE > 0:
        return PooledPostgresqlDatabase(url.path[1:], max_connections=POOL_SIZE, timeout=POOL_TIMEOUT, **params)
    return peewee.PostgresqlDatabase(url.path[1:], **params)


db = _database(DATABASE_NAME)
