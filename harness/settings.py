"""Every setting of a run and of a sweep, each declared once, with its type, check, default and help.

A setting is a field of :class:`RunSettings` (or of :class:`SweepSettings`, a sweep's own
grid), declared with :func:`setting`: its reader (which checks a value from any source and
says what it accepts), its default, its help. From that one declaration come the command
line's option (``--time-scale``; a setting that is on by default gets ``--no-trace``), the
``HARNESS_*`` variable, the configuration file's key (``time_scale``), the pytest plugin's
option (``--harness-time-scale``), ``harness config``'s rows and the reference in the docs.

Each run setting is taken, as uvicorn and Locust take theirs, from the first of: the
command line, a ``HARNESS_*`` environment variable, the configuration file, the built-in
default; :func:`resolve` says where each value came from. A bad value names its key, where
it came from (the option, the variable, or the file and line) and what is accepted.

Standard library only, with :mod:`harness.errors`: ``harness --help``, ``harness list`` and
``harness config`` load no network or database stack.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

from harness.errors import ConfigError
from harness.files import DEFAULT_OUT_DIR
from harness.readers import Choice, ChoiceList, Flag, Fraction, Number, NumberList, Reader, Text
from harness.scenario import (
    MAX_BOUND,
    MAX_DEPTH,
    MAX_EXPLORE_REQUESTS,
    MAX_REQUESTS,
    MAX_SCHEDULES,
    MAX_SECONDS,
    MAX_TIME_SCALE,
    MAX_TRIALS,
    Strategy,
)
from harness.variant import DEFAULT_DATABASE, Database

Source = Literal["command line", "environment", "config file", "built-in"]
Command = Literal["run", "sweep", "replay"]

DEFAULT_HOST = "127.0.0.1"  # loopback only: the app under test has no authentication
DEFAULT_START_TIMEOUT = 30.0
# The built-in configuration's scenario when none is chosen: the tutorial's builds fail and pass it.
# A project's is its one scenario of its own (harness.config.Config.default_scenario).
DEFAULT_SCENARIO = "burst"
DEFAULT_MAX_TRIALS = 100
DEFAULT_MAX_SECONDS = 600.0
# One trial per two cores: a trial of burst keeps two servers and the client busy, and on 2
# cores a second trial beside it tripled how late requests left (benchmarks/jobs.py, README).
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
DEFAULT_JOBS = max(1, _CORES // 2)
# A sweep's grid (harness.grid).
DEFAULT_INTERVALS = (0.25, 0.5, 1.0)
DEFAULT_IN_FLIGHT = (1, 5, 10, 20, 40)
DEFAULT_WAVES = 3
DEFAULT_SWEEP_TRIALS = 10
DEFAULT_CONFIRM_TRIALS = 50
DEFAULT_SWEEP_TIME_SCALE = 0.05
DEFAULT_TARGET = 0.99
DEFAULT_MAX_CELLS = 40
DEFAULT_SWEEP_MAX_SECONDS = 1800.0

# Upper bounds: a scenario's (harness.scenario) hold for the settings that override it, and
# for a sweep's cells; the rest keep a run finite. A job is a server per build.
MAX_JOBS = 64
# The harness's own PostgreSQL: a stock server's limits, 100 connections, the last 3 for superusers only
# (harness.postgres_pool). At least one beyond those 3; 10,000 take 515 MB of shared memory per server.
DEFAULT_POSTGRES_MAX_CONNECTIONS = 100
DEFAULT_POSTGRES_SUPERUSER_RESERVED = 3
MIN_POSTGRES_MAX_CONNECTIONS = DEFAULT_POSTGRES_SUPERUSER_RESERVED + 1
MAX_POSTGRES_MAX_CONNECTIONS = 10_000
MAX_RUN_SECONDS = 86_400.0  # a day: the longest a --confidence run or a sweep may go on
MAX_CELLS = 10_000


@dataclass(frozen=True, kw_only=True)
class Spec:
    """How one setting is given and checked; the field it is declared on names it (:func:`setting`)."""

    read: Reader
    help: str
    metavar: str | None = None
    shown_default: str | None = None  # what --help and harness config say when the default is None or computed
    commands: tuple[Command, ...] = ("run",)
    plugin: bool = True  # the pytest plugin takes it, from --harness-NAME, HARNESS_NAME or the file
    flag: str | None = None  # the command line's option, when it is not the name's (see option())
    path: bool = False  # in the configuration file, relative to the file's folder


def setting(default: Any, read: Reader, help: str, **spec: Any) -> Any:
    """A field of a settings class, declaring the setting (see :class:`Spec`)."""
    return dataclasses.field(default=default, metadata={"spec": Spec(read=read, help=help, **spec)})


def sweep_setting(default: Any, read: Reader, help: str, **spec: Any) -> Any:
    """A field of :class:`SweepGrid`: an option of harness sweep alone."""
    return setting(default, read, help, commands=("sweep",), plugin=False, **spec)


_SECONDS = Number(0, MAX_SECONDS, low_open=True)
_DATABASES: tuple[str, ...] = get_args(Database)


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """The settings of a run (``harness run``, ``harness config``, the pytest plugin), resolved and checked."""

    scenario: str | None = setting(
        None,
        Text(),
        "a scenario's name (harness list) or a TOML file",
        metavar="NAME|PATH",
        shown_default=f"the project's one scenario (scenarios/); without a project file, {DEFAULT_SCENARIO}",
        plugin=False,  # pytest takes scenarios as its arguments
    )
    trials: int | None = setting(
        None, Number(1, MAX_TRIALS, whole=True), "trials per variant", metavar="N", shown_default="the scenario's"
    )
    time_scale: float | None = setting(
        None,
        Number(0, MAX_TIME_SCALE, low_open=True),
        "multiply the app's sleeps and the schedule's gaps by X; 1 is the tutorial's real pace",
        metavar="X",
        shown_default="the scenario's",
    )
    request_timeout: float | None = setting(
        None,
        _SECONDS,
        "give up on a request after this long and record it as a timeout",
        metavar="SECONDS",
        shown_default="the scenario's",
    )
    host: str = setting(
        DEFAULT_HOST,
        Text(),
        "the address servers listen on; loopback only unless --allow-non-loopback",
        metavar="ADDRESS",
        plugin=False,
    )
    confidence: float | None = setting(
        None,
        Fraction(),
        "instead of a fixed number of trials, run until every verdict is decided at this level, e.g. 0.99, or until "
        "--max-trials or --max-seconds; a verdict not decided by then is 'undecided'",
        metavar="C",
        shown_default="none: a fixed number of trials",
        plugin=False,  # an item runs one build, and a clean build's verdict needs the other's paired trials
    )
    max_trials: int = setting(
        DEFAULT_MAX_TRIALS,
        Number(1, MAX_TRIALS, whole=True),
        "with --confidence: the most trials per variant",
        metavar="N",
        plugin=False,
    )
    max_seconds: float = setting(
        DEFAULT_MAX_SECONDS,
        Number(0, MAX_RUN_SECONDS, low_open=True),
        "with --confidence: start no new trial after S seconds",
        metavar="S",
        plugin=False,
    )
    database: Database = setting(
        DEFAULT_DATABASE,
        Choice(_DATABASES),
        "what the builds run on: a SQLite file each, or a database each on PostgreSQL (a server the harness starts, "
        "or --database-url's); a build that names its own database runs only on that one",
    )
    jobs: int = setting(
        DEFAULT_JOBS,
        Number(1, MAX_JOBS, whole=True),
        "trials side by side, each with its own servers (more distorts timings, docs/ci.md)",
        metavar="N",
        shown_default="one per two cores; the pytest plugin's: 1 (xdist's -n runs items side by side)",
        commands=("run", "sweep"),
    )
    start_timeout: float = setting(
        DEFAULT_START_TIMEOUT,
        _SECONDS,
        "give up on a server that is not ready after this long",
        metavar="SECONDS",
        commands=("run", "sweep", "replay"),
    )
    out: str = setting(
        str(DEFAULT_OUT_DIR),
        Text(),
        "folder for output; each run gets a new sub-folder",
        metavar="DIR",
        commands=("run", "sweep", "replay"),
        path=True,
    )
    database_url: str | None = setting(
        None,
        Text(),
        "on PostgreSQL, make the builds' databases on this server of yours instead of one the harness starts: "
        "postgresql://USER:PASSWORD@HOST:PORT/DATABASE, a role that may create databases; only databases named "
        "harness_... are made and dropped there",
        metavar="URL",
        shown_default="none: the harness starts its own server",
        commands=("run", "sweep"),
    )
    postgres_max_connections: int = setting(
        DEFAULT_POSTGRES_MAX_CONNECTIONS,
        Number(MIN_POSTGRES_MAX_CONNECTIONS, MAX_POSTGRES_MAX_CONNECTIONS, whole=True),
        f"on the harness's own PostgreSQL, the connections each app server may open, the last "
        f"{DEFAULT_POSTGRES_SUPERUSER_RESERVED} kept for superusers as on a stock server (each app server gets a "
        "server of its own); not used with --database-url",
        metavar="N",
        commands=("run", "sweep"),
    )
    trace: bool = setting(
        True,
        Flag(),
        "trace connections and threads inside the servers (without it no 5xx gets a diagnosed cause); the trace "
        "costs little (docs/trace.md)",
    )
    explore: bool = setting(
        False,
        Flag(),
        "explore mode: instead of trials at the operating system's timing, the harness owns each server's thread "
        "pool and searches the orders and worker threads of the requests' calls; a failure found is saved, shrunk "
        "and replayable (docs/explore.md)",
    )
    explore_strategy: Strategy | None = setting(
        None,
        Choice(get_args(Strategy)),
        "with --explore: pct (random priorities, a bound per bug depth) or bounded (every schedule with at most "
        "--explore-bound deviations)",
        shown_default="the scenario's [explore], else pct",
    )
    explore_schedules: int | None = setting(
        None,
        Number(1, MAX_SCHEDULES, whole=True),
        "with --explore: schedules per build (pct: seeds 1..N; bounded: the most)",
        metavar="N",
        shown_default="the scenario's [explore], else 100",
    )
    explore_depth: int | None = setting(
        None,
        Number(1, MAX_DEPTH, whole=True),
        "with --explore pct: the depth of bug aimed at",
        metavar="D",
        shown_default="the scenario's [explore], else 2",
    )
    explore_bound: int | None = setting(
        None,
        Number(0, MAX_BOUND, whole=True),
        "with --explore bounded: the most deviations from anyio's own choices",
        metavar="B",
        shown_default="the scenario's [explore], else 2",
    )
    explore_requests: int | None = setting(
        None,
        Number(1, MAX_EXPLORE_REQUESTS, whole=True),
        "with --explore: how many of the scenario's requests each schedule sends",
        metavar="N",
        shown_default="the scenario's [explore], else all of them",
    )


@dataclass(frozen=True, kw_only=True)
class SweepGrid:
    """A sweep's own options: the grid of schedules it measures. The command line only."""

    intervals: tuple[float, ...] = sweep_setting(
        DEFAULT_INTERVALS,
        NumberList(Number(0, MAX_SECONDS)),
        "seconds between waves, in tutorial-seconds as in a scenario file (scaled by --time-scale)",
        metavar="S,S,...",
    )
    in_flight: tuple[int, ...] = sweep_setting(
        DEFAULT_IN_FLIGHT,
        NumberList(Number(1, MAX_REQUESTS, whole=True)),
        "requests sent at once in each wave; 1 is the tutorial's staggered recipe",
        metavar="N,N,...",
    )
    databases: tuple[Database, ...] | None = sweep_setting(
        None,
        ChoiceList(_DATABASES),
        "what the builds run on, an axis of the grid: sqlite, postgres, or both (sqlite,postgres); a build that "
        "names its own database runs on it in every cell",
        metavar="DB,DB,...",
        shown_default="the configuration's, else sqlite",
        flag="--database",
    )
    waves: int = sweep_setting(DEFAULT_WAVES, Number(1, MAX_REQUESTS, whole=True), "waves per trial", metavar="N")
    trials: int = sweep_setting(
        DEFAULT_SWEEP_TRIALS, Number(1, MAX_TRIALS, whole=True), "trials per cell and variant", metavar="N"
    )
    confirm: int = sweep_setting(
        DEFAULT_CONFIRM_TRIALS,
        Number(0, MAX_TRIALS, whole=True),
        "more trials for the cheapest detecting cells, one after the other until one detects again; 0 names the "
        "cheapest detecting cell of the grid as it is",
        metavar="N",
    )
    target: float = sweep_setting(
        DEFAULT_TARGET,
        Fraction(one=True),
        "the share of its trials a build expected to fail must fail in, for a cell to detect; 1: every one",
        metavar="P",
        shown_default="0.99: with fewer than 100 trials, every one",
    )
    time_scale: float = sweep_setting(
        DEFAULT_SWEEP_TIME_SCALE,
        Number(0, MAX_TIME_SCALE, low_open=True),
        "multiply the app's sleeps and the intervals by X",
        metavar="X",
    )
    max_cells: int = sweep_setting(
        DEFAULT_MAX_CELLS, Number(1, MAX_CELLS, whole=True), "refuse a grid of more cells", metavar="N"
    )
    max_seconds: float = sweep_setting(
        DEFAULT_SWEEP_MAX_SECONDS,
        Number(0, MAX_RUN_SECONDS, low_open=True),
        "refuse a sweep estimated to take longer, and start no cell after S seconds",
        metavar="S",
    )


def specs(kind: type[RunSettings] | type[SweepGrid] = RunSettings) -> dict[str, Spec]:
    """The declared settings of ``kind``, by name, in declaration order."""
    return {f.name: f.metadata["spec"] for f in dataclasses.fields(kind)}


def defaults(kind: type[RunSettings] | type[SweepGrid] = RunSettings) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(kind)}


def variable(name: str) -> str:
    return f"HARNESS_{name.upper()}"


def option(name: str) -> str:
    """The command line's option for a setting: ``--time-scale``; ``--no-trace`` for one on by default."""
    flag = name.replace("_", "-")
    return f"--no-{flag}" if _flag_default(name) is True else f"--{flag}"


def plugin_option(name: str) -> str:
    return option(name).replace("--", "--harness-", 1)


def _flag_default(name: str) -> bool | None:
    """A flag run setting's default (on: ``--no-trace`` turns it off; off: ``--explore`` on); None: not a flag."""
    spec = specs().get(name)
    return defaults()[name] if spec is not None and isinstance(spec.read, Flag) else None


def describe_default(name: str, kind: type[RunSettings] | type[SweepGrid] = RunSettings) -> str:
    """A setting's default as --help, harness config and the docs' table say it."""
    spec = specs(kind)[name]
    return spec.shown_default if spec.shown_default is not None else describe_value(defaults(kind)[name])


def describe_value(value: Any) -> str:
    """A setting's value in words: ``on``, ``0.5``, ``0.25,0.5,1``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(describe_value, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_setting(name: str, resolved: Resolved) -> str:
    """A run setting as harness config shows it: its value; a built-in one computed here, with the docs' words."""
    if resolved.value is None:
        return describe_default(name)
    shown, words = describe_value(resolved.value), specs()[name].shown_default
    return f"{shown} ({words})" if resolved.source == "built-in" and words is not None else shown


# -- the command line and the plugin, generated ---------------------------------------------------------------


def add_options(
    parser: Any,
    command: Command,
    *,
    kind: type[RunSettings] | type[SweepGrid] = RunSettings,
    plugin: bool = False,
) -> None:
    """Add an option per setting of ``kind`` that ``command`` takes (or the pytest plugin, ``plugin``).

    Options default to None, "not given", so that :func:`resolve` can fall back on the
    environment, the file and the built-in default in turn. ``parser`` is an argparse
    parser or group, or a pytest option group (whose ``addoption`` takes the same words).
    """
    add = parser.addoption if plugin else parser.add_argument
    for name, spec in specs(kind).items():
        if (plugin and not spec.plugin) or (not plugin and command not in spec.commands):
            continue
        flag = plugin_option(name) if plugin else spec.flag or option(name)
        accepts = "" if isinstance(spec.read, Text | Choice | Flag) else f"; {spec.read.accepts}"
        words = f"{spec.help} (default: {describe_default(name, kind)}{accepts})"
        on = _flag_default(name) if kind is RunSettings else None
        if on is not None:  # given with no value: it sets the opposite of the default
            add(flag, dest=_dest(name, plugin), action="store_const", const=not on, default=None, help=spec.help)
            continue
        if isinstance(spec.read, Choice):
            add(flag, dest=_dest(name, plugin), choices=spec.read.choices, default=None, help=words)
        else:
            read = _argument_type(spec.read)
            add(flag, dest=_dest(name, plugin), type=read, default=None, metavar=spec.metavar, help=words)


def _dest(name: str, plugin: bool) -> str:
    return f"harness_{name}" if plugin else name


def _argument_type(read: Reader) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return read.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = type(read).__name__.lower()  # argparse names it in "invalid <name> value"
    return parse


# -- resolving ------------------------------------------------------------------------------------------------


class FileSettings(Protocol):
    """What :func:`resolve` needs of a configuration (:class:`harness.config.Config`)."""

    @property
    def settings(self) -> Mapping[str, Any]: ...  # the file's run settings, checked

    @property
    def origin(self) -> str: ...  # where they came from


@dataclass(frozen=True, kw_only=True)
class Resolved:
    """A setting's value and where it came from (``origin`` names the variable, or the file and line)."""

    value: Any
    source: Source
    origin: str = ""

    def given_as(self, name: str) -> str:
        """Where it was given, as its user wrote it: ``--max-trials``, ``HARNESS_MAX_TRIALS``, a file's key."""
        if self.source == "command line":
            return option(name)
        if self.source == "environment":
            return self.origin
        return f"{name} in {self.origin}"


def resolve(
    command_line: Mapping[str, Any],
    config: FileSettings,
    *,
    builtin: Mapping[str, Any] | None = None,
    taken: Collection[str] | None = None,
) -> dict[str, Resolved]:
    """Every run setting's value and source: command line > HARNESS_* environment > config file > built-in.

    ``command_line`` holds values already checked (None: not given); the configuration's
    were checked when it was read (:func:`read_file_settings`). ``builtin`` replaces some
    built-in defaults (the pytest plugin's one job: xdist runs its items side by side);
    settings not in ``taken`` (default: all) keep their built-in defaults whatever is given.
    """
    resolved = {}
    environment = os.environ
    for name, default in {**defaults(), **(builtin or {})}.items():
        key = variable(name)
        if taken is not None and name not in taken:
            resolved[name] = Resolved(value=default, source="built-in")
        elif command_line.get(name) is not None:
            resolved[name] = Resolved(value=command_line[name], source="command line")
        elif environment.get(key):
            try:
                value = specs()[name].read.parse(environment[key])
            except ValueError as exc:
                raise ConfigError(f"{key}={_shown(environment[key])}: {exc}") from None
            resolved[name] = Resolved(value=value, source="environment", origin=key)
        elif name in config.settings:
            resolved[name] = Resolved(value=config.settings[name], source="config file", origin=config.origin)
        else:
            resolved[name] = Resolved(value=default, source="built-in")
    return resolved


def _shown(text: str, limit: int = 80) -> str:
    """A variable's value as an error shows it: quoted, escaped, cut."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def read_file_settings(data: Mapping[str, Any], folder: Path | None, fail: Callable[[str, str], Any]) -> dict[str, Any]:
    """The run settings a configuration file gives, checked; ``fail(key, problem)`` reports one bad value."""
    settings: dict[str, Any] = {}
    for name, spec in specs().items():
        if name not in data:
            continue
        try:
            value = spec.read(data[name])
        except ValueError as exc:
            fail(name, str(exc))
            continue
        if folder is not None and (spec.path or (name == "scenario" and _names_a_file(value, folder))):
            value = str(folder / value)
        settings[name] = value
    return settings


def _names_a_file(value: str, folder: Path) -> bool:
    """Whether the file's ``scenario`` names a file, which is relative to the file's folder, not a built-in."""
    return value.endswith(".toml") or (folder / value).exists()


def run_settings(resolved: Mapping[str, Resolved]) -> RunSettings:
    """The resolved values as one typed object."""
    return RunSettings(**{name: setting.value for name, setting in resolved.items()})


def sweep_grid(values: Mapping[str, Any]) -> SweepGrid:
    """A sweep's options, each not given taking its default."""
    given = {name: value for name, value in values.items() if name in specs(SweepGrid) and value is not None}
    return SweepGrid(**given)
