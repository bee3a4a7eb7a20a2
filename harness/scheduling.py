"""How pytest-xdist hands out the plugin's items: a scenario's builds, one after another, on one worker.

Two builds of one scenario compared under different loads (one alone on a quiet worker,
the other beside a busy one, or on another machine) differ by more than their code. So a
scenario file's items are one unit of work, as a module's tests are under ``--dist
loadscope``; every other test is a unit of its own, as under ``--dist load``, or its
``xdist_group``'s under ``--dist loadgroup``. Node ids stay as they are. Not by an
``xdist_group`` mark of our own: with pytest 9.2, xdist 3.8's ``loadgroup`` loses every
group (it marks them in a node id pytest no longer reads: pytest-dev/pytest-xdist#1386).
Imported only when xdist asks for a scheduler: xdist is not needed to import the plugin.
"""

from __future__ import annotations

from xdist.scheduler import LoadGroupScheduling


class ScenarioScheduling(LoadGroupScheduling):  # type: ignore[misc]  # xdist has no type information
    """``--dist load`` or ``loadgroup``, except that the items of one scenario file go to one worker together."""

    def _split_scope(self, nodeid: str) -> str:
        group = super()._split_scope(nodeid)
        if group != nodeid:
            return str(group)  # an xdist_group's, where xdist could mark it
        file, separator, _ = nodeid.partition("::")
        return file if separator and file.endswith(".toml") else nodeid
