"""Test-only sync FastAPI apps on SQLAlchemy whose bug needs two requests to interleave inside one endpoint call.

Each is a factory (``factory = true``) reading its SQLite database from ``DATABASE_URL``. The
endpoint adds an item, flushes it, commits, reads its id and closes the session, all in one
call to the thread pool:

- ``shared``: one module-level ``Session`` for every request. Another request's ``close()``
  between this one's flush and its read of the id detaches the item, which expired at the
  commit: ``DetachedInstanceError``. Whole calls never overlap at call granularity, so only
  SQLAlchemy's scheduling points can show it.
- ``per_request``: a session per request, the fix. Two of them still meet at SQLite's write
  lock, which one takes at its flush and keeps until its commit: the other waits there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager

from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import Engine, Integer, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class NewItem(BaseModel):
    name: str


def shared() -> FastAPI:
    engine = _engine()
    db = Session(engine)  # every request's: the bug
    return _items(lambda: contextlib.nullcontext(db))


def per_request() -> FastAPI:
    engine = _engine()
    return _items(lambda: Session(engine))


def _engine() -> Engine:
    engine = create_engine(os.environ["DATABASE_URL"], connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    return engine


def _items(session: Callable[[], AbstractContextManager[Session]]) -> FastAPI:
    app = FastAPI()

    @app.post("/items")
    def create_item(item: NewItem) -> dict[str, int]:
        with session() as db:
            row = Item(name=item.name)
            db.add(row)
            db.flush()
            db.commit()
            created = {"id": row.id}  # expired at the commit: read back through the session
            db.close()
        return created

    return app
