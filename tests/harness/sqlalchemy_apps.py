"""Test-only FastAPI apps on SQLAlchemy with the three concurrency bugs users meet most, and a fixed build of each.

Each is a factory (``factory = true``) reading its database from ``DATABASE_URL`` (the
build's ``{database_url}``, SQLite in the build's ``{tmp}``):

- ``scoped_broken``: sync endpoints on a ``scoped_session`` that is never removed, so a
  worker thread's session outlives its request; a rejected order (422) leaves its pending row
  in it, which the next request on that thread flushes: the CHECK constraint fails there, and
  the request after that meets the session's pending rollback. ``scoped_fixed`` removes the
  session at the end of each request.
- ``shared_broken``: async endpoints on one module-level ``AsyncSession``, closed after each
  request while others are still using it. ``shared_fixed``: a session per request. Both
  without a pool (``NullPool``), so each use of the session awaits a new connection: the
  window where another request's close() breaks in opens at every request, not only when
  the pool happens to be empty.
- ``unclosed_broken``: an ``AsyncSession`` per request, never closed: each keeps its pooled
  connection (pool of 2 + 2 overflow, 5 s to wait) until the garbage collector finds it.
  ``unclosed_fixed`` closes it (``async with``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import CheckConstraint, Integer, String, create_engine, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, scoped_session, sessionmaker
from sqlalchemy.pool import NullPool

POOL_TIMEOUT = 5.0  # seconds a request waits for a pooled connection: far more than the fixed builds ever wait


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (CheckConstraint("quantity > 0", name="some_quantity"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer: Mapped[str] = mapped_column(String(40))
    quantity: Mapped[int] = mapped_column(Integer)


class NewOrder(BaseModel):
    n: int


def scoped_broken() -> FastAPI:
    return _scoped(remove=False)


def scoped_fixed() -> FastAPI:
    return _scoped(remove=True)


def _scoped(*, remove: bool) -> FastAPI:
    engine = create_engine(
        os.environ["DATABASE_URL"], connect_args={"check_same_thread": False}, pool_timeout=POOL_TIMEOUT
    )
    Base.metadata.create_all(engine)
    registry = scoped_session(sessionmaker(engine))
    app = FastAPI()

    @app.post("/orders")
    def place_order(order: NewOrder) -> dict[str, Any]:
        session = registry()  # the worker thread's session
        try:
            row = Order(customer=f"customer {order.n}", quantity=order.n % 4)
            session.add(row)
            if row.quantity == 0:
                raise HTTPException(422, "an order of nothing")  # the pending row stays in the thread's session
            session.commit()
            return {"id": row.id}
        finally:
            if remove:
                registry.remove()

    return app


def shared_broken() -> FastAPI:
    engine = _async_engine(poolclass=NullPool)
    shared = AsyncSession(engine, expire_on_commit=False)  # one session for every request

    async def session() -> AsyncIterator[AsyncSession]:
        try:
            yield shared
        finally:
            await shared.close()

    return _listing(engine, session)


def shared_fixed() -> FastAPI:
    engine = _async_engine(poolclass=NullPool)

    async def session() -> AsyncIterator[AsyncSession]:
        async with AsyncSession(engine, expire_on_commit=False) as own:
            yield own

    return _listing(engine, session)


def unclosed_broken() -> FastAPI:
    engine = _async_engine(pool_size=2, max_overflow=2, pool_timeout=POOL_TIMEOUT)

    async def session() -> AsyncIterator[AsyncSession]:
        yield AsyncSession(engine, expire_on_commit=False)  # never closed: its connection stays checked out

    return _listing(engine, session)


def unclosed_fixed() -> FastAPI:
    engine = _async_engine(pool_size=2, max_overflow=2, pool_timeout=POOL_TIMEOUT)

    async def session() -> AsyncIterator[AsyncSession]:
        async with AsyncSession(engine, expire_on_commit=False) as own:
            yield own

    return _listing(engine, session)


def _async_engine(**pool: Any) -> AsyncEngine:
    return create_async_engine(os.environ["DATABASE_URL"].replace("sqlite://", "sqlite+aiosqlite://", 1), **pool)


def _listing(engine: AsyncEngine, session: Any) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    # FastAPI reads the parameters' annotations by name from this module: a local Annotated alias would not resolve.
    db_session = Depends(session)

    @app.get("/orders")
    async def list_orders(db: AsyncSession = db_session) -> list[dict[str, Any]]:
        rows = (await db.execute(select(Order).limit(20))).scalars().all()
        return [{"id": row.id, "customer": row.customer} for row in rows]

    @app.post("/orders")
    async def place_order(order: NewOrder, db: AsyncSession = db_session) -> dict[str, Any]:
        row = Order(customer=f"customer {order.n}", quantity=order.n % 4 + 1)
        db.add(row)
        await db.commit()
        return {"id": row.id}

    return app
