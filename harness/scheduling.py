"""How pytest-xdist hands out the plugin's items: a scenario's builds, one after another, on one worker.

Two builds of one scenario compared under different loads (one alone on a quiet worker,
the other beside a busy one, or on another machine) differ by more than their code. So a
scenario's items are one unit of work, as a module's tests are under ``--dist loadscope``;
every other test is a unit of its own, as under xdist's default ``--dist load``, and node
ids stay as they are (``--dist loadgroup`` appends ``@group`` to each). Imported only when
xdist asks for a scheduler: xdist is not needed to import the plugin.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling


class ScenarioScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist has no type information
    """``--dist load``, except that the items of one scenario file go to one worker together."""

    def _split_scope(self, nodeid: str) -> str:
        file, separator, _ = nodeid.partition("::")
        return file if separator and file.endswith(".toml") else nodeid
