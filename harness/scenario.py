"""Scenarios: what to seed, which requests to fire when, how often, and what to expect.

A scenario is a TOML file; the built-ins live in the ``scenarios`` package and load by
name. Times in ``[schedule]`` are in the app's seconds, like the countdown of
``/slowusers/``: ``time_scale`` shrinks both, so a scaled run keeps the tutorial's shape.

Every complaint about a file is one line, ``FILE:LINE: [table] key: problem``, as
compilers write them; the line is the key's (or its table's, for a missing key), found by
a scan of the text, and left out when the key is not written on a line of its own.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args

from harness.errors import ScenarioError
from harness.variant import VARIANTS, Expectation, Variant

__all__ = [
    "Expectation",
    "Scenario",
    "Schedule",
    "ScheduleKind",
    "Seed",
    "builtin_scenarios",
    "load_scenario",
    "scenario_toml",
]

ScheduleKind = Literal["staggered", "burst", "waves"]

DEFAULT_SCENARIO = "burst"
DEFAULT_TRIALS = 5
# How a run may grow: trials side by side, and the bounds of a --confidence run. One trial
# per two cores: a trial of burst keeps two servers and the client busy, and on 2 cores a
# second trial beside it tripled how late requests left (benchmarks/jobs.py, README).
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
DEFAULT_JOBS = max(1, _CORES // 2)
DEFAULT_MAX_TRIALS = 100
DEFAULT_MAX_SECONDS = 600.0
DEFAULT_TIME_SCALE = 1.0
DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_PATH = "/slowusers/"


@dataclass(frozen=True, kw_only=True)
class Seed:
    """Data created through the API before the schedule starts."""

    users: int = 2
    items_per_user: int = 2


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """When each request of a trial is sent: ``requests`` in waves of ``wave_size``.

    ``staggered`` is waves of one, ``burst`` a single wave; ``interval`` separates waves.
    """

    kind: ScheduleKind
    requests: int
    interval: float = 0.0
    wave_size: int = 1
    path: str = DEFAULT_PATH

    def offsets(self, time_scale: float) -> list[float]:
        """Planned send time of each request, in seconds from the trial's start."""
        per_wave = {"staggered": 1, "burst": self.requests, "waves": self.wave_size}[self.kind]
        return [(index // per_wave) * self.interval * time_scale for index in range(self.requests)]


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    description: str
    schedule: Schedule
    seed: Seed = field(default_factory=Seed)
    trials: int = DEFAULT_TRIALS
    time_scale: float = DEFAULT_TIME_SCALE
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    expect: dict[str, Expectation] = field(default_factory=dict)

    def expectation(self, variant: Variant) -> Expectation:
        return self.expect.get(variant.name, variant.expect)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "scenario") -> Scenario:
        """Validate a scenario document; ``origin`` names it in error messages."""
        return _parse(data, origin=origin, default_name=str(data.get("name", origin)))


def builtin_scenarios() -> dict[str, Scenario]:
    """The scenarios shipped in the ``scenarios`` package, by name."""
    files = sorted(resources.files("harness.scenarios").iterdir(), key=lambda entry: entry.name)
    return {
        entry.name.removesuffix(".toml"): _load_text(entry.read_text(encoding="utf-8"), origin=entry.name)
        for entry in files
        if entry.name.endswith(".toml")
    }


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a user's TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ScenarioError(f"{path}: not a UTF-8 text file") from None
        return _load_text(text, origin=str(path))
    builtins = builtin_scenarios()
    if name_or_path not in builtins:
        raise ScenarioError(f"unknown scenario {name_or_path!r}: not a file, nor a built-in ({', '.join(builtins)})")
    return builtins[name_or_path]


def scenario_toml(scenario: Scenario, *, comment: str = "") -> str:
    """``scenario`` as the text of a TOML file that :func:`load_scenario` reads back as it is.

    ``comment`` heads the file, each of its lines as a TOML comment.
    """
    top = {
        "name": scenario.name,
        "description": scenario.description,
        "trials": scenario.trials,
        "time_scale": scenario.time_scale,
        "request_timeout": scenario.request_timeout,
    }
    tables: dict[str, dict[str, Any]] = {
        "seed": asdict(scenario.seed),
        "schedule": asdict(scenario.schedule),
        "expect": dict(scenario.expect),
    }
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines += [f"{key} = {_toml_value(value)}" for key, value in top.items()]
    for table, entries in tables.items():
        lines += ["", f"[{table}]", *(f"{key} = {_toml_value(value)}" for key, value in entries.items())]
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        # A JSON string is a TOML basic string, but for DEL, which TOML wants escaped and JSON does not.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return repr(value)


def _load_text(text: str, *, origin: str) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"at line (\d+)", str(exc))
        raise ScenarioError(f"{origin}{':' + line.group(1) if line else ''}: invalid TOML: {exc}") from None
    return _parse(data, origin=origin, default_name=Path(origin).stem, text=text)


def _parse(data: dict[str, Any], *, origin: str, default_name: str, text: str = "") -> Scenario:
    top = _Table(data, origin=origin, source=text)
    top.only({"name", "description", "trials", "time_scale", "request_timeout", "seed", "schedule", "expect"})
    schedule = top.table("schedule", required=True)
    schedule.only({"kind", "requests", "interval", "wave_size", "path"})
    kind = schedule.choice("kind", get_args(ScheduleKind), required=True)
    path = schedule.text("path", DEFAULT_PATH)
    if not path.startswith("/"):
        schedule.fail("path", f"must start with '/', got {path!r}")
    seed = top.table("seed")
    seed.only({"users", "items_per_user"})
    expect = top.table("expect")
    expect.only(set(VARIANTS), what="variant")
    name = top.text("name", default_name)
    if not _FOLDER_SAFE.fullmatch(name):
        top.fail("name", f"names the run's folder: letters, digits, '.', '_', '-' and spaces only, got {name!r}")
    return Scenario(
        name=name,
        description=top.text("description", ""),
        schedule=Schedule(
            kind=kind,
            requests=schedule.count("requests", required=True),
            interval=schedule.seconds("interval", 0.0, allow_zero=True),
            wave_size=schedule.count("wave_size", 1, required=kind == "waves"),
            path=path,
        ),
        seed=Seed(
            users=seed.count("users", Seed.users, allow_zero=True),
            items_per_user=seed.count("items_per_user", Seed.items_per_user, allow_zero=True),
        ),
        trials=top.count("trials", DEFAULT_TRIALS),
        time_scale=top.seconds("time_scale", DEFAULT_TIME_SCALE),
        request_timeout=top.seconds("request_timeout", DEFAULT_REQUEST_TIMEOUT),
        expect={name: expect.choice(name, get_args(Expectation)) for name in expect.data},
    )


class _Table:
    """One table of a scenario document; every complaint names the origin, line, table and key."""

    def __init__(self, data: dict[str, Any], *, origin: str, name: str = "", source: str = "") -> None:
        self.data = data
        self.origin = origin
        self.name = name
        self.source = source  # the file's text, to find lines in

    def fail(self, key: str, problem: str) -> NoReturn:
        where = f"[{self.name}] {key}" if self.name else key
        line = _line_of(self.source, self.name, key)
        raise ScenarioError(f"{self.origin}{f':{line}' if line else ''}: {where}: {problem}")

    def only(self, known: set[str], *, what: str = "key") -> None:
        for key in self.data:
            if key not in known:
                self.fail(key, f"unknown {what}; expected one of: {', '.join(sorted(known))}")

    def table(self, key: str, *, required: bool = False) -> _Table:
        value = self._get(key, {}, required)
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {_describe(value)}")
        return _Table(value, origin=self.origin, name=key, source=self.source)

    def count(self, key: str, default: int = 0, *, required: bool = False, allow_zero: bool = False) -> int:
        value = self._get(key, default, required)
        lowest = 0 if allow_zero else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            self.fail(key, f"expected a whole number >= {lowest}, got {_describe(value)}")
        return value

    def seconds(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        value = self._get(key, default, False)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
            or (value == 0 and not allow_zero)
        ):
            self.fail(key, f"expected a number {'>= 0' if allow_zero else '> 0'}, got {_describe(value)}")
        return float(value)

    def text(self, key: str, default: str) -> str:
        value = self._get(key, default, False)
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_describe(value)}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], *, required: bool = False) -> Any:
        value = self._get(key, None, required)
        if value not in choices:
            self.fail(key, f"expected one of {', '.join(map(repr, choices))}, got {_describe(value)}")
        return value

    def _get(self, key: str, default: object, required: bool) -> object:
        if key not in self.data:
            if required:
                self.fail(key, "missing")
            return default
        return self.data[key]


_FOLDER_SAFE = re.compile(r"[\w.\- ]{1,100}")
_HEADER = re.compile(r"""\s*\[\s*["']?([^"'\[\]]+?)["']?\s*\]\s*(#.*)?""")


def _line_of(text: str, table: str, key: str) -> int | None:
    """The line of ``key = ...`` in ``[table]`` (a top-level table's own header counts), else of ``[table]``."""
    assignment = re.compile(rf"""\s*(["']?){re.escape(key)}\1\s*=""")
    current, header_line = "", None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.fullmatch(line)
        if header:
            current = header.group(1)
            if current == table:
                header_line = number
            elif not table and current == key:
                return number
        elif current == table and assignment.match(line):
            return number
    return header_line


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)
