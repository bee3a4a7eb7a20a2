"""What runs inside the servers imports, at module level, the standard library and itself only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import harness.server

SERVER = Path(harness.server.__file__).parent
# Imported inside the tracer's hooks, from the app's own environment, never at module level.
THE_APPS_OWN = {"peewee", "starlette", "anyio", "sqlalchemy"}


def module_level_imports(path: Path) -> set[str]:
    """The top-level names a module imports outside any function or class."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def lazy_imports(path: Path) -> set[str]:
    """The top-level packages imported inside functions."""
    names = set()
    for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", sorted(SERVER.glob("*.py")), ids=lambda path: path.name)
def test_a_server_module_imports_the_standard_library_and_harness_server_only(module: Path) -> None:
    outside = {
        name
        for name in module_level_imports(module)
        if name != "__future__"
        and name.split(".")[0] not in sys.stdlib_module_names
        and not (name == "harness.server" or name.startswith("harness.server."))
    }
    assert not outside, f"{module.name} imports {sorted(outside)} at module level"
    assert lazy_imports(module) <= THE_APPS_OWN | set(sys.stdlib_module_names)


def test_the_check_would_catch_a_module_level_import_of_the_harness_client(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import json\nimport httpx\nfrom harness.results import RunResult\nfrom harness.server import tracer\n"
    )
    assert module_level_imports(sample) - set(sys.stdlib_module_names) == {
        "httpx",
        "harness.results",
        "harness.server",
    }
