"""The tutorial's FastAPI app (``sql_app/main.py``), built around one :class:`Patch`.

A process builds one app: the database, its connection state and the ``/slowusers/``
countdown are process state, as in the tutorial's "terminate your running app and start
it again". The route bodies are written once; the patch decides how a request gets its
connection: the tutorial's ``get_db`` dependency, or ``connection_context()`` around the
endpoint's body.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar, cast

from fastapi import Depends, FastAPI, HTTPException

from harness.app_variants import crud, database, models, schemas
from harness.app_variants.patches import Patch

TIME_SCALE = float(os.environ.get("APP_VARIANTS_TIME_SCALE", "1"))

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def get_db_dependency(reset_db_state: Callable[[], Awaitable[None]]) -> Callable[..., Iterator[None]]:
    """The tutorial's ``get_db``: the connection opens before the endpoint and closes after the response."""

    def get_db(db_state: None = Depends(reset_db_state)) -> Iterator[None]:
        try:
            database.db.connect()
            yield
        finally:
            if not database.db.is_closed():
                database.db.close()

    return get_db


def in_connection_context(endpoint: Endpoint) -> Endpoint:
    """Peewee's advice today: ``with db.connection_context():`` around a sync endpoint's body.

    The wrapper runs in the endpoint's own thread-pool job, so the connection opens and
    closes in that job; FastAPI reads the endpoint's signature through ``__wrapped__``.
    """

    @functools.wraps(endpoint)
    def body(*args: Any, **kwargs: Any) -> Any:
        with database.db.connection_context():
            return endpoint(*args, **kwargs)

    return cast(Endpoint, body)


def as_written(endpoint: Endpoint) -> Endpoint:
    """The tutorial's endpoints: the connection is ``get_db``'s business."""
    return endpoint


def create_app(patch: Patch) -> FastAPI:
    if patch.connection_state is not None:
        database.db._state = patch.connection_state()

    database.db.connect()
    database.db.create_tables([models.User, models.Item])
    database.db.close()

    app = FastAPI()
    sleep_time = 10
    if patch.reset_db_state is None:
        dependencies: list[Any] = []
        connected = in_connection_context
    else:
        dependencies = [Depends(get_db_dependency(patch.reset_db_state))]
        connected = as_written

    @app.post("/users/", response_model=schemas.User, dependencies=dependencies)
    @connected
    def create_user(user: schemas.UserCreate) -> models.User:
        db_user = crud.get_user_by_email(email=user.email)
        if db_user:
            raise HTTPException(status_code=400, detail="Email already registered")
        return crud.create_user(user=user)

    @app.get("/users/", response_model=list[schemas.User], dependencies=dependencies)
    @connected
    def read_users(skip: int = 0, limit: int = 100) -> list[models.User]:
        return crud.get_users(skip=skip, limit=limit)

    @app.get("/users/{user_id}", response_model=schemas.User, dependencies=dependencies)
    @connected
    def read_user(user_id: int) -> models.User:
        db_user = crud.get_user(user_id=user_id)
        if db_user is None:
            raise HTTPException(status_code=404, detail="User not found")
        return db_user

    @app.post("/users/{user_id}/items/", response_model=schemas.Item, dependencies=dependencies)
    @connected
    def create_item_for_user(user_id: int, item: schemas.ItemCreate) -> models.Item:
        return crud.create_user_item(item=item, user_id=user_id)

    @app.get("/items/", response_model=list[schemas.Item], dependencies=dependencies)
    @connected
    def read_items(skip: int = 0, limit: int = 100) -> list[models.Item]:
        return crud.get_items(skip=skip, limit=limit)

    @app.get("/slowusers/", response_model=list[schemas.User], dependencies=dependencies)
    @connected
    def read_slow_users(skip: int = 0, limit: int = 100) -> list[models.User]:
        nonlocal sleep_time
        sleep_time = max(0, sleep_time - 1)
        time.sleep(sleep_time * TIME_SCALE)  # Fake long processing request
        return crud.get_users(skip=skip, limit=limit)

    return app
