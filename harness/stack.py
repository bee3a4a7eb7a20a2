"""Stacks: named sets of pinned versions the app under test runs on, and which one is installed.

Each stack is a pip requirements file of exact pins in ``harness/stacks/`` (its first
comment line says what it is), installed beside the harness with
``pip install -e . -r harness/stacks/NAME.txt``. The installed stack is the one whose every
pin matches what is installed; anything else is :data:`CUSTOM_STACK`. A run records it in
its environment (:mod:`harness.environment`), so a results file says what it ran on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata, resources

CUSTOM_STACK = "custom"
# The newest pip that installs every stack: uvicorn 0.14.0 (legacy) declares click>=7.*,
# which pip 24.1 and later refuse as an invalid specifier.
STACK_INSTALLER = "pip<24.1"

_PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")


@dataclass(frozen=True, kw_only=True)
class Stack:
    name: str
    description: str
    pins: dict[str, str]  # normalised distribution name -> exact version


def stacks() -> dict[str, Stack]:
    """The stacks shipped with the harness, by name."""
    files = sorted(
        (entry for entry in (resources.files("harness") / "stacks").iterdir() if entry.name.endswith(".txt")),
        key=lambda entry: entry.name,
    )
    return {stack.name: stack for stack in (parse_stack(f.name.removesuffix(".txt"), f.read_text()) for f in files)}


def parse_stack(name: str, text: str) -> Stack:
    """A stack from its file: comment lines, blank lines and ``name==version`` pins, nothing else."""
    description = ""
    pins: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("#"):
            description = description or line.lstrip("# ")
        elif line:
            match = _PIN.fullmatch(line)
            if match is None:
                raise ValueError(f"stack {name!r}, line {number}: expected name==version, got {line!r}")
            pins[_normalise(match["name"])] = match["version"]
    return Stack(name=name, description=description, pins=pins)


def installed_stack(version_of: Callable[[str], str | None] | None = None) -> str:
    """The name of the stack whose every pin is installed, or :data:`CUSTOM_STACK`."""
    lookup = version_of or _installed_version
    for stack in stacks().values():
        if all(lookup(package) == version for package, version in stack.pins.items()):
            return stack.name
    return CUSTOM_STACK


def _installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503, as pip compares names
