"""Hooks run on a module when the app imports it, and never for an app that does not.

The tracer hooks Peewee and SQLAlchemy this way: the probe imports neither, so a server whose app
uses one ORM never imports the other, nor pays for it. :func:`when_imported` puts a finder first
on ``sys.meta_path`` that only watches: it wraps the loader the other finders give a watched
module, which runs the module's hook once the module has run. A module imported already (the warm
parent's, :mod:`harness.server.forkserver`) is hooked at once.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Hook = Callable[[types.ModuleType], None]


def when_imported(hooks: Mapping[str, Hook]) -> None:
    """Run each hook on its module (named in full, ``sqlalchemy.orm``) once it is imported, once."""
    watcher = _Watcher(hooks)
    for name in tuple(watcher.pending):
        if name in sys.modules:
            watcher.hook(name, sys.modules[name])
    if watcher.pending:
        sys.meta_path.insert(0, watcher)


class _Watcher(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the loader the other finders give each module it watches."""

    def __init__(self, hooks: Mapping[str, Hook]) -> None:
        self.pending = dict(hooks)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _HookingLoader(spec.loader, lambda module: self.hook(fullname, module))
                return spec
        return None

    def hook(self, name: str, module: types.ModuleType) -> None:
        hook = self.pending.pop(name, None)
        if hook is None:  # importlib.reload() runs the wrapped loader again: hooked once is enough
            return
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)
        hook(module)


class _HookingLoader(importlib.abc.Loader):
    """The real loader, then the hook on the module it made."""

    def __init__(self, loader: importlib.abc.Loader, hook: Hook) -> None:
        self._loader = loader
        self._hook = hook

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = self._loader  # what the module sees of its loader stays the real one
        self._loader.exec_module(module)
        self._hook(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package...: the real loader's
        return getattr(self._loader, name)
