"""Where the three builds differ, side by side: nothing else in the app tells them apart.

Two rows are the tutorial's patch points; the third is where a request gets its connection,
which the tutorial puts in a ``yield`` dependency and Peewee's documentation today puts in
the endpoint's own body.

======================  ============================  =============================  ===========================
patch point             unpatched                     patched                        recommended
======================  ============================  =============================  ===========================
``db._state``           Peewee's default              ``PeeweeConnectionState()``    Peewee's default
                        (a threading.local)           (a contextvar)                 (a threading.local)
a request's connection  ``get_db``: yield dependency  ``get_db``: yield dependency   ``db.connection_context()``
                                                                                     in each endpoint's body
``reset_db_state()``    ``pass`` (commented out)      fresh state dict, ``reset()``  none: no ``get_db``
======================  ============================  =============================  ===========================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import peewee

from harness.app_variants import database


@dataclass(frozen=True, kw_only=True)
class Patch:
    """What one build puts at the tutorial's two patch points, and so where a request gets its connection.

    ``connection_state`` builds ``db._state``; None keeps Peewee's thread-local default.
    ``reset_db_state`` is the async dependency under the tutorial's ``get_db``; None means no
    ``get_db`` at all: each endpoint opens and closes its connection in its own body.
    """

    connection_state: Callable[[], peewee._ConnectionState] | None
    reset_db_state: Callable[[], Awaitable[None]] | None


async def _reset_nothing() -> None:
    pass


async def _reset_contextvar_state() -> None:
    database.db._state._state.set(database.db_state_default.copy())
    database.db._state.reset()


UNPATCHED = Patch(connection_state=None, reset_db_state=_reset_nothing)
PATCHED = Patch(connection_state=database.PeeweeConnectionState, reset_db_state=_reset_contextvar_state)
RECOMMENDED = Patch(connection_state=None, reset_db_state=None)
