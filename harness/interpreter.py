"""A build's own interpreter: ``python = "PATH"`` in a variant, a Python with its own FastAPI, Pydantic and uvicorn.

The harness is not installed there. Its server side (:mod:`harness.server`, standard library
only) reaches that interpreter through ``PYTHONPATH``: :func:`server_path` is a folder holding
a ``harness`` package of three links, to the harness's ``__init__.py`` (free of imports), its
``server`` package and its built-in apps (``app_variants``), and nothing else, so none of the
harness's own dependencies (its stack) can leak into the build's.

:func:`checked_interpreter` runs the interpreter once per run, before any trial, with that
path: it must import FastAPI, uvicorn and the harness's probe, and it says which versions it
has. Whatever stops it (no such file, not executable, not a Python, an import that fails, no
answer within the start timeout) is a :class:`~harness.errors.ConfigError` naming the build.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import util
from pathlib import Path
from typing import Any

import harness
from harness.environment import PACKAGES
from harness.errors import ConfigError
from harness.settings import DEFAULT_START_TIMEOUT
from harness.stack import installed_stack, stacks
from harness.variant import Variant

# The oldest Python the server side runs on: the harness's own (pyproject.toml), the only one it is
# tested on; it uses 3.10's dataclass(kw_only=True) and isinstance(x, A | B).
MIN_PYTHON = (3, 11)
# Run by the build's interpreter, in the standard library of any Python 3 (an older one is told so):
# one JSON line after a marker, whatever the interpreter printed before it.
_CHECK = """
import json, platform, sys
answer = {"python": platform.python_version(), "versions": {}}
if sys.version_info < MIN_PYTHON:
    print("\\n" + MARKER + json.dumps(answer))
    sys.exit()
import importlib, importlib.metadata as metadata, inspect
for name in sys.argv[1:]:
    try:
        answer["versions"][name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
for module in ("fastapi", "uvicorn", "harness.server.probe"):
    try:
        importlib.import_module(module)
    except BaseException as exc:
        said = str(exc).splitlines()
        answer["failed"] = [module, type(exc).__name__ + (": " + said[0] if said else "")]
        break
else:
    import uvicorn
    answer["graceful"] = "timeout_graceful_shutdown" in inspect.signature(uvicorn.Config).parameters
print("\\n" + MARKER + json.dumps(answer))
"""
_MARKER = "harness-interpreter: "
_ERROR_LIMIT = 300  # characters of what a failed check printed, in its one-line error


@dataclass(frozen=True, kw_only=True)
class Interpreter:
    """A build's own Python, as its check found it."""

    path: str  # as the configuration gave it (made absolute, not resolved: a virtualenv's python is a link)
    python: str  # its version
    versions: dict[str, str] = field(default_factory=dict)  # of the app's stack and the stacks' pins it has
    graceful_shutdown: bool = False  # its uvicorn takes --timeout-graceful-shutdown (not 0.14, legacy stack)

    @property
    def stack(self) -> str:
        """The shipped stack whose every pin it has, or ``custom``."""
        return installed_stack(self.versions.get)

    def record(self) -> dict[str, str]:
        """What a run's results say about it: the keys of the environment's record (harness.environment)."""
        versions = {package: self.versions.get(package, "not installed") for package in PACKAGES}
        return {"executable": self.path, "python": self.python, **versions, "stack": self.stack}


_checked: dict[str, Interpreter] = {}


def checked_interpreter(path: str, *, variant: str, timeout: float = DEFAULT_START_TIMEOUT) -> Interpreter:
    """The interpreter at ``path``, run once per process: a ConfigError naming ``variant`` if it cannot serve it."""
    if path not in _checked:
        _checked[path] = _check(path, variant, timeout)
    return _checked[path]


def checked_interpreters(variants: Iterable[Variant], *, timeout: float) -> dict[str, Interpreter]:
    """The own interpreter of each build that has one, by variant, each checked once per process."""
    return {v.name: checked_interpreter(v.python, variant=v.name, timeout=timeout) for v in variants if v.python}


def _check(path: str, variant: str, timeout: float) -> Interpreter:
    where = f"variant {variant!r}: python = {path}"
    names = sorted({*PACKAGES, *(name for stack in stacks().values() for name in stack.pins)})
    script = _CHECK.replace("MIN_PYTHON", repr(MIN_PYTHON)).replace("MARKER", repr(_MARKER))
    try:
        done = subprocess.run(
            [path, "-c", script, *names],
            env=server_environment(os.environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            cwd=server_path(),  # not the user's folder: what is there must not stand in for an import
        )
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except PermissionError:
        raise ConfigError(f"{where}: not executable (or a folder)") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{where}: did not answer within {timeout:g} s (is it a Python?)") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be run ({exc.strerror or exc})") from None
    output = done.stdout.decode(errors="replace")
    answer = _answer(output)
    if answer is None:
        said = _one_line(done.stderr.decode(errors="replace") or output)
        raise ConfigError(f"{where}: not a Python the harness can use (exit code {done.returncode}{said})")
    oldest = ".".join(map(str, MIN_PYTHON))
    if tuple(int(part) for part in re.findall(r"\d+", str(answer["python"]))[:2]) < MIN_PYTHON:
        raise ConfigError(
            f"{where}: Python {answer['python']} is older than {oldest}, the oldest the harness serves on"
        )
    if "failed" in answer:
        module, error = answer["failed"]  # two strings: _answer checked
        what = "the harness's server code" if module.startswith("harness.") else module
        raise ConfigError(f"{where}: cannot import {what} ({error[:_ERROR_LIMIT]})")
    return Interpreter(
        path=path,
        python=str(answer["python"]),
        versions={str(name): str(version) for name, version in answer["versions"].items()},
        graceful_shutdown=answer.get("graceful") is True,
    )


def _answer(output: str) -> dict[str, Any] | None:
    """The check's answer, the last marked line of ``output``; None if there is none of the check's shape."""
    for line in reversed(output.splitlines()):
        if line.startswith(_MARKER):
            try:
                answer = json.loads(line.removeprefix(_MARKER))
            except ValueError:
                return None
            return answer if _is_answer(answer) else None
    return None


def _is_answer(answer: Any) -> bool:
    if not isinstance(answer, dict) or not isinstance(answer.get("python"), str):
        return False
    versions, failed = answer.get("versions"), answer.get("failed", ["", ""])
    return (
        isinstance(versions, dict)
        and all(isinstance(value, str) for value in versions.values())
        and isinstance(failed, list)
        and len(failed) == 2
        and all(isinstance(part, str) for part in failed)
    )


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f": {lines[-1][:_ERROR_LIMIT]}" if lines else ""


def server_environment(environment: Mapping[str, str], own_path: str | None = None) -> dict[str, str]:
    """``environment`` for a process of a build's own interpreter: the harness's server code on its path.

    The harness's own ``PYTHONPATH`` is dropped (it may hold the harness's stack); ``own_path``
    is the one the build's ``env`` or ``env_file`` sets, kept after the server code.
    """
    paths = [str(server_path()), *([own_path] if own_path else [])]
    return {**{k: v for k, v in environment.items() if k != "PYTHONPATH"}, "PYTHONPATH": os.pathsep.join(paths)}


@functools.cache
def server_path() -> Path:
    """A folder of this process's, removed at its exit, whose only package is the harness's server side."""
    folder = Path(tempfile.mkdtemp(prefix="harness-server-path-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    package = folder / "harness"
    package.mkdir()
    own = Path(harness.__file__).parent
    spec = util.find_spec("harness.app_variants")  # installed under harness/, or mapped there (editable)
    assert spec is not None and spec.submodule_search_locations is not None
    (package / "__init__.py").symlink_to(own / "__init__.py")
    (package / "server").symlink_to(own / "server", target_is_directory=True)
    (package / "app_variants").symlink_to(next(iter(spec.submodule_search_locations)), target_is_directory=True)
    return folder
