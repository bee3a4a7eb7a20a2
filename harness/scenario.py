"""Scenarios: what to seed, which requests to fire when, how often, and what to expect.

A scenario is a TOML file; the built-ins live in the ``scenarios`` package and load by
name. Times in ``[schedule]`` are in the app's seconds, like the countdown of
``/slowusers/``: ``time_scale`` shrinks both, so a scaled run keeps the tutorial's shape.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args

from harness.errors import ScenarioError
from harness.variant import VARIANTS, Expectation

__all__ = ["Expectation", "Scenario", "Schedule", "ScheduleKind", "Seed", "builtin_scenarios", "load_scenario"]

ScheduleKind = Literal["staggered", "burst", "waves"]

DEFAULT_SCENARIO = "burst"
DEFAULT_TRIALS = 5
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

    def expectation(self, variant: str) -> Expectation:
        return self.expect.get(variant, VARIANTS[variant].expect)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "scenario") -> Scenario:
        """Validate a scenario document; ``origin`` names it in error messages."""
        return _parse(data, origin=origin, default_name=str(data.get("name", origin)))


def builtin_scenarios() -> dict[str, Scenario]:
    """The scenarios shipped in the ``scenarios`` package, by name."""
    files = sorted(resources.files("scenarios").iterdir(), key=lambda entry: entry.name)
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


def _load_text(text: str, *, origin: str) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{origin}: invalid TOML: {exc}") from None
    return _parse(data, origin=origin, default_name=Path(origin).stem)


def _parse(data: dict[str, Any], *, origin: str, default_name: str) -> Scenario:
    check = _Checker(origin)
    check.keys(
        data, "", {"name", "description", "trials", "time_scale", "request_timeout", "seed", "schedule", "expect"}
    )
    schedule_data = check.table(data, "", "schedule", required=True)
    check.keys(schedule_data, "schedule", {"kind", "requests", "interval", "wave_size", "path"})
    kind = check.choice(schedule_data, "schedule", "kind", get_args(ScheduleKind), required=True)
    schedule = Schedule(
        kind=kind,
        requests=check.count(schedule_data, "schedule", "requests", required=True),
        interval=check.seconds(schedule_data, "schedule", "interval", 0.0, allow_zero=True),
        wave_size=check.count(schedule_data, "schedule", "wave_size", 1, required=kind == "waves"),
        path=check.text(schedule_data, "schedule", "path", DEFAULT_PATH),
    )
    if not schedule.path.startswith("/"):
        check.fail("schedule", "path", f"must start with '/', got {schedule.path!r}")
    seed_data = check.table(data, "", "seed")
    check.keys(seed_data, "seed", {"users", "items_per_user"})
    seed = Seed(
        users=check.count(seed_data, "seed", "users", Seed.users, allow_zero=True),
        items_per_user=check.count(seed_data, "seed", "items_per_user", Seed.items_per_user, allow_zero=True),
    )
    expect_data = check.table(data, "", "expect")
    check.keys(expect_data, "expect", set(VARIANTS), what="variant")
    expect = {name: check.choice(expect_data, "expect", name, get_args(Expectation)) for name in expect_data}
    return Scenario(
        name=check.text(data, "", "name", default_name),
        description=check.text(data, "", "description", ""),
        schedule=schedule,
        seed=seed,
        trials=check.count(data, "", "trials", DEFAULT_TRIALS),
        time_scale=check.seconds(data, "", "time_scale", DEFAULT_TIME_SCALE),
        request_timeout=check.seconds(data, "", "request_timeout", DEFAULT_REQUEST_TIMEOUT),
        expect=expect,
    )


class _Checker:
    """Reads typed fields from a parsed document; every complaint names origin and field."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, table: str, key: str, problem: str) -> NoReturn:
        where = f"[{table}] {key}" if table else key
        raise ScenarioError(f"{self.origin}: {where}: {problem}")

    def keys(self, data: dict[str, Any], table: str, known: set[str], *, what: str = "key") -> None:
        for key in data:
            if key not in known:
                self.fail(table, key, f"unknown {what}; expected one of: {', '.join(sorted(known))}")

    def _get(self, data: dict[str, Any], table: str, key: str, default: object, required: bool) -> object:
        if key not in data:
            if required:
                self.fail(table, key, "missing")
            return default
        return data[key]

    def table(self, data: dict[str, Any], table: str, key: str, *, required: bool = False) -> dict[str, Any]:
        value = self._get(data, table, key, {}, required)
        if not isinstance(value, dict):
            self.fail(table, key, f"expected a table, got {_describe(value)}")
        return value

    def count(
        self,
        data: dict[str, Any],
        table: str,
        key: str,
        default: int = 0,
        *,
        required: bool = False,
        allow_zero: bool = False,
    ) -> int:
        value = self._get(data, table, key, default, required)
        lowest = 0 if allow_zero else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            self.fail(table, key, f"expected a whole number >= {lowest}, got {_describe(value)}")
        return value

    def seconds(
        self,
        data: dict[str, Any],
        table: str,
        key: str,
        default: float,
        *,
        allow_zero: bool = False,
    ) -> float:
        value = self._get(data, table, key, default, False)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
            or (value == 0 and not allow_zero)
        ):
            bound = ">= 0" if allow_zero else "> 0"
            self.fail(table, key, f"expected a number {bound}, got {_describe(value)}")
        return float(value)

    def text(self, data: dict[str, Any], table: str, key: str, default: str) -> str:
        value = self._get(data, table, key, default, False)
        if not isinstance(value, str):
            self.fail(table, key, f"expected a string, got {_describe(value)}")
        return value

    def choice(
        self,
        data: dict[str, Any],
        table: str,
        key: str,
        choices: tuple[str, ...],
        *,
        required: bool = False,
    ) -> Any:
        value = self._get(data, table, key, None, required)
        if value not in choices:
            self.fail(table, key, f"expected one of {', '.join(map(repr, choices))}, got {_describe(value)}")
        return value


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)
