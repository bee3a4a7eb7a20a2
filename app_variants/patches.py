"""The tutorial's two patch points, side by side: the only difference between the builds.

=====================  ====================================  ==========================================
patch point            unpatched                             patched
=====================  ====================================  ==========================================
``db._state``          Peewee's default (a threading.local)  ``PeeweeConnectionState()`` (contextvars)
``reset_db_state()``   ``pass`` (body commented out)         a fresh state dict, then ``reset()``
=====================  ====================================  ==========================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import peewee

from harness.app_variants import database


@dataclass(frozen=True, kw_only=True)
class Patch:
    """What one build puts at the tutorial's two patch points."""

    connection_state: Callable[[], peewee._ConnectionState] | None
    reset_db_state: Callable[[], Awaitable[None]]


async def _reset_nothing() -> None:
    pass


async def _reset_contextvar_state() -> None:
    database.db._state._state.set(database.db_state_default.copy())
    database.db._state.reset()


UNPATCHED = Patch(connection_state=None, reset_db_state=_reset_nothing)
PATCHED = Patch(connection_state=database.PeeweeConnectionState, reset_db_state=_reset_contextvar_state)
