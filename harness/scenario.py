"""Scenarios: what to seed, which requests to fire when, how often, and what to expect.

A scenario is a TOML file; the built-ins live in ``harness.scenarios`` and load by name,
a user's are found in ``scenarios/`` beside their configuration (:mod:`harness.config`)
or named by path. Seed steps and the schedule's request are plain HTTP requests::

    [[seed]]
    method = "POST"
    path = "/users/"
    json = { email = "user{i}@example.com" }
    repeat = 2

    [schedule]
    kind = "burst"
    requests = 50

    [schedule.request]
    path = "/orders/{i}"

``{i}`` is the request's number (from 0) within its seed step or the schedule, ``{trial}``
the trial's; a seed step's ``save`` names further placeholders, filled from its JSON answer
(:mod:`harness.flow`), and ``form`` posts a form instead of ``json``. Times in
``[schedule]`` are in the app's seconds: ``time_scale`` multiplies them, and the launcher
hands it to the app (``{time_scale}`` in a variant's ``env``), so a scaled run keeps the
app's shape. The tutorial's shorthand ``[seed] users = 2`` creates users with items through
the tutorial's API; a scenario with neither seeds nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast, get_args

from harness.errors import ScenarioError
from harness.files import folder_safe
from harness.tomlfile import Table, parse_toml
from harness.variant import DEFAULT_DATABASE, Database, Expectation, Variant

__all__ = [
    "Expectation",
    "FailureKind",
    "HttpRequest",
    "Scenario",
    "Schedule",
    "ScheduleKind",
    "Seed",
    "builtin_scenarios",
    "load_scenario",
    "scenario_toml",
]

ScheduleKind = Literal["staggered", "burst", "waves"]
# How explore mode searches the schedules of the thread pool (docs/explore.md): PCT's random
# priorities, or every schedule with at most ``bound`` deviations from what anyio would do.
Strategy = Literal["pct", "bounded"]
# What makes a trial fail: a 5xx answer, no answer (a reset connection), or no answer in time; or, for
# the trial as a whole, connections its app's trace shows never closed or given back to their pool.
FailureKind = Literal["5xx", "transport-error", "timeout", "leak"]

DEFAULT_TRIALS = 5
DEFAULT_TIME_SCALE = 1.0
DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_PATH = "/slowusers/"
DEFAULT_FAIL_ON: tuple[FailureKind, ...] = ("5xx",)
# With fail_on "leak", a trial fails when more connections than this are never closed: 0, any leak. An app
# may hold a few on purpose (one opened at startup and kept), and a leak that grows with the load still shows.
DEFAULT_LEAK_THRESHOLD = 0
# Ceilings of what a scenario may ask for, each reported with its key and line when exceeded.
# A request in flight costs the harness about 41 KiB (benchmarks/memory_2000.py: 52.8 MiB at
# 200 requests per build, 197.5 MiB at 2,000, two builds), and every trial starts all its
# requests' tasks before the first is sent: 5,000 at once for each of three builds is about
# 600 MiB. A finished request's record stays in memory for the run (about 340 bytes).
MAX_REQUESTS = 5_000  # [schedule] requests and wave_size
MAX_TRIALS = 1_000  # 1,000 trials of 5,000 requests keep 5 million records, about 1.7 GB: the most a run may hold
MAX_SEED_REPEAT = 10_000  # a [[seed]] step's requests, sent one after another
MAX_SESSIONS = MAX_SEED_REPEAT  # a cookie jar each: more than any step's repetitions would be jars never filled
MAX_SEED_USERS = 1_000  # [seed] users, each 1 + items_per_user requests in turn
MAX_ITEMS_PER_USER = 100
MAX_TIME_SCALE = 100.0  # a tutorial-second a hundred seconds long
MAX_SECONDS = 3_600.0  # interval and request_timeout, in (scaled) seconds: an hour
MAX_LEAK_THRESHOLD = 100_000  # above what a trial opens: 20 connections for each of MAX_REQUESTS
# Explore mode (docs/explore.md). A schedule's steps grow with its requests, and PCT's bound
# falls with the steps: a few requests are what a bug of this family needs.
DEFAULT_DEPTH = 2
DEFAULT_SCHEDULES = 100
DEFAULT_BOUND = 2
MAX_EXPLORE_REQUESTS = 32
MAX_DEPTH = 5
MAX_SCHEDULES = 100_000
MAX_BOUND = 4
PLACEHOLDERS = ("i", "trial")
# A save's path into a JSON answer: keys and list indexes joined by dots (``items.0.id``).
_DOTTED = re.compile(r"[^.\[\]\s]+(?:\.[^.\[\]\s]+)*")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a field name (RFC 9110, 5.1); httpx sends ASCII only


@dataclass(frozen=True, kw_only=True)
class HttpRequest:
    """One request of a seed step or of the schedule; strings may hold ``{i}``, ``{trial}`` and saved values."""

    method: str = "GET"
    path: str = DEFAULT_PATH
    json: Any = None
    form: dict[str, str] | None = None  # fields of a form post (application/x-www-form-urlencoded), instead of json
    headers: dict[str, str] = field(default_factory=dict)
    repeat: int = 1  # a seed step's number of requests
    save: dict[str, str] = field(default_factory=dict)  # a seed step's: placeholder name -> dotted path in its answer

    def render(self, values: Mapping[str, object]) -> HttpRequest:
        """The request with the placeholders of its path, body, form and headers filled in from ``values``."""
        return replace(
            self,
            path=self.path.format_map(values),
            json=_render(self.json, values),
            form=_render(self.form, values),
            headers={key: value.format_map(values) for key, value in self.headers.items()},
        )


@dataclass(frozen=True, kw_only=True)
class Seed:
    """The tutorial's shorthand: users created through its API, each with items."""

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
    request: HttpRequest = field(default_factory=HttpRequest)

    def offsets(self, time_scale: float) -> list[float]:
        """Planned send time of each request, in seconds from the trial's start."""
        per_wave = {"staggered": 1, "burst": self.requests, "waves": self.wave_size}[self.kind]
        return [(index // per_wave) * self.interval * time_scale for index in range(self.requests)]


@dataclass(frozen=True, kw_only=True)
class Explore:
    """How explore mode searches this scenario's schedules: ``[explore]`` in its file."""

    requests: int | None = None  # how many of the schedule's requests each explored schedule sends; None: all
    strategy: Strategy = "pct"
    depth: int = DEFAULT_DEPTH  # PCT: the depth of bug it is aimed at (d - 1 priority change points)
    schedules: int = DEFAULT_SCHEDULES  # PCT: seeds 1..schedules; bounded: the most schedules to run
    bound: int = DEFAULT_BOUND  # bounded: the most deviations from anyio's own choices

    def request_count(self, schedule: Schedule) -> int:
        return min(self.requests or schedule.requests, schedule.requests)


_ON_POSTGRES = "postgres"  # [expect.postgres]


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    description: str
    schedule: Schedule
    seed: Seed | tuple[HttpRequest, ...] = ()  # nothing: an app the harness does not know needs no tutorial users
    sessions: int = 1  # cookie jars: request {i} of a seed step or of the schedule uses jar i mod sessions
    trials: int = DEFAULT_TRIALS
    time_scale: float = DEFAULT_TIME_SCALE
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    fail_on: tuple[FailureKind, ...] = DEFAULT_FAIL_ON
    leak_threshold: int = DEFAULT_LEAK_THRESHOLD  # with fail_on "leak": the most unclosed connections a trial may leave
    expect: dict[str, Expectation] = field(default_factory=dict)
    # [expect.postgres]: what a build that runs on PostgreSQL is expected to do there, over [expect]. A
    # stock server's 97 connections can fail a build SQLite leaves clean (harness.postgres_pool).
    expect_on_postgres: dict[str, Expectation] = field(default_factory=dict)
    explore: Explore = field(default_factory=Explore)

    def expectation(self, variant: Variant, database: Database = DEFAULT_DATABASE) -> Expectation:
        if database == "postgres" and variant.name in self.expect_on_postgres:
            return self.expect_on_postgres[variant.name]
        return self.expect.get(variant.name, variant.expect)

    def to_dict(self) -> dict[str, Any]:
        """The scenario as its TOML file has it (what :meth:`from_dict` and :func:`scenario_toml` take)."""
        request = _request_table(asdict(self.schedule.request))
        del request["repeat"]
        seed: Any = asdict(self.seed) if isinstance(self.seed, Seed) else [_request_table(asdict(s)) for s in self.seed]
        return {
            "name": self.name,
            "description": self.description,
            "trials": self.trials,
            "time_scale": self.time_scale,
            "request_timeout": self.request_timeout,
            "fail_on": list(self.fail_on),
            # Only when set: a scenario that does not set them keeps the digest it had before the keys existed.
            **({"leak_threshold": self.leak_threshold} if self.leak_threshold != DEFAULT_LEAK_THRESHOLD else {}),
            **({"sessions": self.sessions} if self.sessions != 1 else {}),
            "seed": seed,
            "schedule": {**asdict(self.schedule), "request": request},
            "expect": {
                **self.expect,
                **({_ON_POSTGRES: dict(self.expect_on_postgres)} if self.expect_on_postgres else {}),
            },
            "explore": {key: value for key, value in asdict(self.explore).items() if value is not None},
        }

    def digest(self) -> str:
        """What the scenario asks for, as a short hash: runs of one name whose digests differ measured other things.

        Its number of trials is left out: more or fewer trials measure the same thing.
        """
        definition = {key: value for key, value in self.to_dict().items() if key != "trials"}
        return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "scenario") -> Scenario:
        """Validate a scenario document; ``origin`` names it in error messages."""
        return _parse(data, origin=origin, default_name=str(data.get("name", origin)))


def builtin_scenarios() -> dict[str, Scenario]:
    """The scenarios shipped in ``harness.scenarios``, by name."""
    files = sorted(resources.files("harness.scenarios").iterdir(), key=lambda entry: entry.name)
    return {
        entry.name.removesuffix(".toml"): _load_text(entry.read_text(encoding="utf-8"), origin=str(entry))
        for entry in files
        if entry.name.endswith(".toml")
    }


def load_scenario(name_or_path: str, known: Callable[[], dict[str, Scenario]] = builtin_scenarios) -> Scenario:
    """A TOML file by path, or a scenario of ``known()`` (default: the built-ins) by name."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return load_scenario_file(path)
    scenarios = known()
    if name_or_path not in scenarios:
        raise ScenarioError(f"unknown scenario {name_or_path!r}: not a file, nor one of: {', '.join(scenarios)}")
    return scenarios[name_or_path]


def load_scenario_file(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not a UTF-8 text file") from None
    return _load_text(text, origin=str(path))


def scenario_toml(scenario: Scenario, *, comment: str = "") -> str:
    """``scenario`` as the text of a TOML file that :func:`load_scenario` reads back as it is.

    ``comment`` heads the file, each of its lines as a TOML comment.
    """
    document = scenario.to_dict()
    tables = {key: document.pop(key) for key in ("seed", "schedule", "expect", "explore")}
    request = tables["schedule"].pop("request")
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines += _assignments(document)
    if isinstance(tables["seed"], dict):
        lines += ["", "[seed]", *_assignments(tables["seed"])]
    for step in tables["seed"] if isinstance(tables["seed"], list) else ():
        lines += ["", "[[seed]]", *_assignments(step)]
    lines += ["", "[schedule]", *_assignments(tables["schedule"]), "", "[schedule.request]", *_assignments(request)]
    lines += ["", "[expect]", *_assignments(tables["expect"])]
    lines += ["", "[explore]", *_assignments(tables["explore"])]
    return "\n".join(lines) + "\n"


def _request_table(data: dict[str, Any]) -> dict[str, Any]:
    """A request as its TOML table has it: no ``json``, ``form``, ``headers`` or ``save`` it does not have."""
    return {key: value for key, value in data.items() if value is not None and value != {}}


def _assignments(table: dict[str, Any]) -> list[str]:
    return [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in table.items()]


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else _toml_value(key)


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        # A JSON string is a TOML basic string, but for DEL, which TOML wants escaped and JSON does not.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def _render(value: Any, values: Mapping[str, object]) -> Any:
    """A JSON body (or a form) with the placeholders of its strings filled in, keys included."""
    if isinstance(value, str):
        return value.format_map(values)
    if isinstance(value, dict):
        return {_render(key, values): _render(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, values) for item in value]
    return value


def _load_text(text: str, *, origin: str) -> Scenario:
    data = parse_toml(text, origin=origin, error=ScenarioError)
    return _parse(data, origin=origin, default_name=Path(origin).stem, text=text)


def _parse(data: dict[str, Any], *, origin: str, default_name: str, text: str = "") -> Scenario:
    top = Table(data, origin=origin, error=ScenarioError, source=text)
    top.only(
        {
            "name",
            "description",
            "trials",
            "time_scale",
            "request_timeout",
            "fail_on",
            "leak_threshold",
            "sessions",
            "seed",
            "schedule",
            "expect",
            "explore",
        }
    )
    schedule = top.table("schedule", required=True)
    schedule.only({"kind", "requests", "interval", "wave_size", "path", "request"})
    kind = schedule.choice("kind", get_args(ScheduleKind), required=True)
    if "path" in schedule.data and "request" in schedule.data:
        schedule.fail("path", "give the path in [schedule.request], or path alone, not both")
    seed = _seed(top)
    if "request" in schedule.data:
        written = schedule.table("request")
        request = _request(written, seed=False)
    else:
        written, request = schedule, HttpRequest(path=_path(schedule, schedule.text("path", DEFAULT_PATH)))
    saved = [name for step in (seed if isinstance(seed, tuple) else ()) for name in step.save]
    _check_placeholders(written, request, saved=saved, later={})
    expect = top.table("expect")
    # [expect.postgres] is a table; a build named postgres has a string
    on_postgres = expect.table(_ON_POSTGRES) if isinstance(expect.data.get(_ON_POSTGRES), dict) else None
    for table in (expect, on_postgres) if on_postgres else (expect,):
        for variant in table.data:
            if table is not on_postgres and variant == _ON_POSTGRES and on_postgres:
                continue
            table.choice(variant, get_args(Expectation))
    fail_on = top.strings("fail_on", DEFAULT_FAIL_ON)
    for kind_name in fail_on:
        if kind_name not in get_args(FailureKind):
            top.fail("fail_on", f"expected a list of {', '.join(map(repr, get_args(FailureKind)))}, got {kind_name!r}")
    if "leak_threshold" in top.data and "leak" not in fail_on:
        top.fail("leak_threshold", "counts only when fail_on has 'leak'")
    name = top.text("name", default_name)
    if not folder_safe(name):
        top.fail("name", f"names the run's folder: ASCII letters, digits, '.', '_', '-' and spaces only, got {name!r}")
    return Scenario(
        name=name,
        description=top.text("description", ""),
        schedule=Schedule(
            kind=kind,
            requests=schedule.count("requests", most=MAX_REQUESTS, required=True),
            interval=schedule.number("interval", 0.0, most=MAX_SECONDS, allow_zero=True),
            wave_size=schedule.count("wave_size", 1, most=MAX_REQUESTS, required=kind == "waves"),
            request=request,
        ),
        seed=seed,
        sessions=top.count("sessions", 1, most=MAX_SESSIONS),
        trials=top.count("trials", DEFAULT_TRIALS, most=MAX_TRIALS),
        time_scale=top.number("time_scale", DEFAULT_TIME_SCALE, most=MAX_TIME_SCALE),
        request_timeout=top.number("request_timeout", DEFAULT_REQUEST_TIMEOUT, most=MAX_SECONDS),
        fail_on=tuple(dict.fromkeys(cast(tuple[FailureKind, ...], fail_on))),
        leak_threshold=top.count("leak_threshold", DEFAULT_LEAK_THRESHOLD, most=MAX_LEAK_THRESHOLD, allow_zero=True),
        expect={name: value for name, value in expect.data.items() if not isinstance(value, dict)},
        expect_on_postgres=dict(on_postgres.data) if on_postgres else {},
        explore=_explore(top.table("explore")),
    )


def _explore(table: Table) -> Explore:
    table.only({"requests", "strategy", "depth", "schedules", "bound"})
    return Explore(
        requests=table.count("requests", most=MAX_EXPLORE_REQUESTS) if "requests" in table.data else None,
        strategy=table.choice("strategy", get_args(Strategy), default="pct"),
        depth=table.count("depth", DEFAULT_DEPTH, most=MAX_DEPTH),
        schedules=table.count("schedules", DEFAULT_SCHEDULES, most=MAX_SCHEDULES),
        bound=table.count("bound", DEFAULT_BOUND, most=MAX_BOUND, allow_zero=True),
    )


def _seed(top: Table) -> Seed | tuple[HttpRequest, ...]:
    """``[[seed]]`` steps, the tutorial's ``[seed]`` shorthand, or no seeding at all when neither is given."""
    if "seed" not in top.data:
        return ()
    if isinstance(top.get("seed"), list):
        tables = top.tables("seed")
        steps = [_request(step, seed=True) for step in tables]
        saved_by = {name: number for number, step in enumerate(steps, start=1) for name in reversed(step.save)}
        saved: list[str] = []
        for number, (table, step) in enumerate(zip(tables, steps, strict=True), start=1):
            later = {name: by for name, by in saved_by.items() if by >= number}
            _check_placeholders(table, step, saved=saved, later=later)
            for name in step.save:
                if name in saved:
                    table.fail("save", f"{{{name}}} is saved by an earlier step already: give each value its own name")
                saved.append(name)
        return tuple(steps)
    seed = top.table("seed")
    seed.only({"users", "items_per_user"})
    return Seed(
        users=seed.count("users", Seed.users, most=MAX_SEED_USERS, allow_zero=True),
        items_per_user=seed.count("items_per_user", Seed.items_per_user, most=MAX_ITEMS_PER_USER, allow_zero=True),
    )


def _request(table: Table, *, seed: bool) -> HttpRequest:
    """A request's keys, each checked; its placeholders are checked by :func:`_check_placeholders`, which knows
    what the steps before it save."""
    # The schedule saves nothing: its requests are the trial's last, so no request comes after them to use a value.
    table.only({"method", "path", "json", "form", "headers", *(("repeat", "save") if seed else ())})
    method = table.text("method", "GET").upper()
    if method not in _METHODS:
        table.fail("method", f"expected one of {', '.join(_METHODS)}, got {table.data['method']!r}")
    headers = {
        _header_name(table, key): _header_value(table, value) for key, value in table.string_table("headers").items()
    }
    body = table.get("json")
    _check_body(table, body)
    if "form" in table.data and "json" in table.data:
        table.fail("form", "a request has one body: give json or form, not both")
    return HttpRequest(
        method=method,
        path=_path(table, table.text("path", required=True)),
        json=body,
        form=table.string_table("form") if "form" in table.data else None,
        headers=headers,
        repeat=table.count("repeat", 1, most=MAX_SEED_REPEAT) if seed else 1,
        save={name: _save_path(table, name, path) for name, path in table.string_table("save").items()},
    )


def _save_path(table: Table, name: str, path: str) -> str:
    if not (name.isidentifier() and name.isascii()) or name in PLACEHOLDERS:
        table.fail("save", f"{name!r} cannot name a placeholder: ASCII letters, digits and '_', not {{i}} or {{trial}}")
    if not _DOTTED.fullmatch(path):
        table.fail(
            "save",
            f"{name} = {path!r} is not a dotted path: keys and list indexes joined by '.', such as "
            "'access_token' or 'items.0.id'",
        )
    return path


def _check_placeholders(table: Table, request: HttpRequest, *, saved: list[str], later: dict[str, int]) -> None:
    """Every placeholder of ``request`` is ``{i}``, ``{trial}`` or a value an earlier step ``saved``.

    ``later`` names the values steps from this one on save, with the step's number: used here, they would be
    used before they exist.
    """
    known = (*PLACEHOLDERS, *saved)
    sample: dict[str, object] = {"i": 0, "trial": 1, **dict.fromkeys(saved, "")}  # what each is at run time
    texts = [
        ("path", request.path),
        *(("headers", value) for value in request.headers.values()),
        *(("json", text) for text in _strings(request.json)),
        *(("form", text) for text in _strings(request.form)),
    ]
    for key, text in texts:
        try:
            early = [name for _, name, _, _ in string.Formatter().parse(text) if name in later and name not in known]
        except ValueError:
            early = []  # not a template at all: table.template says why
        if early:
            table.fail(
                key,
                f"{{{early[0]}}} in {text!r} is used before it is saved: [[seed]] step {later[early[0]]} saves it, "
                "and only the steps after it and the schedule can use it",
            )
        table.template(key, text, known)
        try:
            text.format_map(sample)
        except ValueError as exc:  # a format spec its value does not take, such as {token:d}
            table.fail(key, f"{exc} in {text!r}")


def _strings(value: Any) -> Iterator[str]:
    """Every string of a JSON body or a form, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _header_name(table: Table, name: str) -> str:
    if not _HEADER_NAME.fullmatch(name):
        table.fail("headers", f"{name!r} cannot name a header: ASCII letters, digits and !#$%&'*+-.^_`|~ only")
    return name


def _header_value(table: Table, value: str) -> str:
    if not (value.isascii() and value.isprintable()):
        table.fail("headers", f"{value!r} cannot go in a header: printable ASCII only")
    return value


def _check_body(table: Table, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):  # JSON has no nan or inf: httpx would send invalid JSON
        table.fail("json", f"JSON has no {value!r}: a body may hold finite numbers only")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_body(table, key)
            _check_body(table, item)
    elif isinstance(value, list):
        for item in value:
            _check_body(table, item)


def _path(table: Table, path: str) -> str:
    if not path.startswith("/"):
        table.fail("path", f"must start with '/', got {path!r}")
    return path
