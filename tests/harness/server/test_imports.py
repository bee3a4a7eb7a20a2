"""Hooks on a module the app imports, each case in a fresh interpreter: the real import system, nothing imported
before but what the case imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

WATCH = """
import importlib, sys
from harness.server import imports
hooked = []
imports.when_imported({name: lambda m, name=name: hooked.append((name, m.NAME)) for name in ("shop", "shop.orm")})
"""


def run(script: str, tmp_path: Path) -> list[str]:
    """What ``script`` printed, run after :data:`WATCH` beside a package ``shop`` with a module ``orm``."""
    (tmp_path / "shop").mkdir(exist_ok=True)
    (tmp_path / "shop" / "__init__.py").write_text('NAME = "shop"\n')
    (tmp_path / "shop" / "orm.py").write_text('NAME = "orm"\n')
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", WATCH + textwrap.dedent(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_watched_module_is_hooked_once_it_has_run_and_the_watcher_leaves_when_all_are_hooked(tmp_path: Path) -> None:
    printed = run(
        """
        import json  # not watched: untouched
        print(len(hooked), type(sys.meta_path[0]).__name__)
        import shop
        print(hooked, type(sys.meta_path[0]).__name__)
        import shop.orm
        print(hooked, type(sys.meta_path[0]).__name__ == "_Watcher", shop.orm.__loader__.__class__.__name__)
        """,
        tmp_path,
    )
    assert printed == [
        "0",
        "_Watcher",
        "[('shop',",
        "'shop')]",
        "_Watcher",
        "[('shop',",
        "'shop'),",
        "('shop.orm',",
        "'orm')]",
        "False",
        "SourceFileLoader",  # what the module sees of its loader is the real one
    ]


def test_a_reload_is_not_hooked_again_and_a_module_imported_before_is_hooked_at_once(tmp_path: Path) -> None:
    printed = run(
        """
        import shop
        importlib.reload(shop)
        print(hooked)
        imports.when_imported({"shop": lambda module: print("at once", module.NAME)})
        """,
        tmp_path,
    )
    assert printed == ["[('shop',", "'shop')]", "at", "once", "shop"]


def test_a_module_never_imported_is_never_imported_by_the_watcher(tmp_path: Path) -> None:
    printed = run('import email.message\nprint("shop" in sys.modules, hooked)\n', tmp_path)
    assert printed == ["False", "[]"]
