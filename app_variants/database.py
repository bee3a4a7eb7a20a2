"""The Peewee database and the tutorial's contextvars-backed connection state."""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Any

import peewee

DATABASE_NAME = os.environ.get("APP_VARIANTS_DATABASE", "test.db")

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


db = peewee.SqliteDatabase(DATABASE_NAME, check_same_thread=False)
