"""The results schema: one versioned record per run, shared by every reader.

The CLI writes it, the pytest plugin and the HTML report read it. A run's record is two
files in its folder: ``results.json``, the run without its trials (scenario, environment,
summaries, verdicts), small enough to rewrite after every round; and ``trials.jsonl``,
one line per trial appended when the trial ends and never rewritten, so a run's writing
grows with its trials, not with their square. A trial's line names its columns once and
holds each request and trace event as a row, every text in it once (:func:`pack_trial`):
a traceback repeated by 50 failed requests, or a request id the trace names 10 times.
Times of a trial are in seconds from the start of its schedule (seed requests come before
it, so negative), to the microsecond; dates are ISO 8601 in UTC. Both files travel as one
string too (:func:`pack_record`): the pytest plugin's workers send their runs to the
controller that way, inside each item's report.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import json
import math
import types
import typing
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

from harness.errors import ExitCode, ResultsError, ScenarioError
from harness.files import JsonLines, atomic_writer, read_json_lines
from harness.readers import Fraction
from harness.scenario import Scenario, Strategy
from harness.variant import DEFAULT_DATABASE, Database, Expectation

DEFAULT_LEAK_WAIT = 0.5  # seconds after a build's last response until a connection still open counts as leaked

SCHEMA_VERSION = 8  # 2: failure rates, power, confidence, jobs; 3: server-side trace and diagnoses;
# 4: any app's builds: generic seed steps and request, fail_on, trace and url of the run;
# 5: the trials in trials.jsonl beside results.json, one compact line each, written once; a power's
# favourable pairs, the evidence of --confidence's paired stopping rule; 6: the database each build ran on,
# and on PostgreSQL its open connections through each trial, their peak and those left open after it;
# 7: the scenario's [explore], and explore mode's search per build (ExploreResult); 8: SQLAlchemy's and asyncio's
# trace (its event kinds, task, session, causes), most_checked_out and pooled, fail_on "leak" (leak_threshold,
# leak_trials), most_common_failure, a scenario's sessions and [expect.postgres], each build's own interpreter,
# a schedule step's point
RESULTS_FILE = "results.json"  # in each run's folder: the run, its summaries and verdicts, rewritten each round
TRIALS_FILE = "trials.jsonl"  # beside it: each trial appended once, when it ends (:func:`pack_trial`)
JOURNAL_FILE = "records.jsonl"  # beside it: the requests of the trials under way, as they happen (harness.journal)
SWEEP_FILE = "sweep.json"  # in a sweep's folder, its document of record; its cells' runs beside it

_T = TypeVar("_T")

Phase = Literal["seed", "schedule"]
Outcome = Literal["ok", "client-error", "server-error", "transport-error", "timeout", "interrupted"]
Observed = Literal["fails", "degraded", "clean", "error"]
VerdictKind = Literal["met", "regression", "silent", "undecided", "error"]
# Peewee's: database, connect, query, close; the thread pool's: phase; SQLAlchemy's (docs/trace.md): the rest.
TraceKind = Literal[
    "database",
    "connect",
    "query",
    "close",
    "phase",
    "pool-connect",
    "checkout",
    "checkin",
    "invalidate",
    "pool-close",
    "begin",
    "db-error",
    "session",
    "session-begin",
    "session-end",
    "session-call",
    "session-close",
]
CauseKind = Literal[
    "leaked-connection",
    "double-connect",
    "startup-connection",
    "pool-exhausted",
    "database-error",
    "shared-session",
    "carried-session",
    "unreturned-connection",
    "unexplained",
    "no-trace",
]
Stage = Literal["grid", "confirm"]  # of a sweep's cell: its grid trials, or a candidate's confirmation


def microseconds(seconds: float) -> float:
    """A time of the record, to the microsecond: finer than any clock tick it is compared with, and 9 digits long."""
    return round(seconds, 6)


@dataclass(frozen=True, kw_only=True, slots=True)  # slots: a long run holds many
class ServerException:
    """An exception that left the app inside a server, as the probe saw it."""

    request_id: str
    method: str | None
    path: str | None
    type: str
    message: str
    traceback: str
    response_status: int | None
    time: float


@dataclass(frozen=True, kw_only=True, slots=True)  # slots: a long run holds many
class TraceEvent:
    """One thing a server thread did for a request, as :mod:`harness.server.tracer` saw it.

    Threads are numbered per server in the order first seen, 0 being the event loop's;
    connections in the order opened. ``phase`` is the thread-pool job the event happened
    in; an event of kind ``phase`` is that job itself, from ``start`` to ``time``.
    """

    kind: TraceKind
    request_id: str | None
    thread: int
    time: float
    phase: str | None = None
    start: float | None = None
    connection: int | None = None  # opened, used or closed; for a connect() that raised, the one still held
    error: str | None = None
    auto: bool = False  # a connect() Peewee made itself; a checkin the garbage collector made, not the app
    sql: str | None = None
    task: int | None = None  # the asyncio task, numbered per server in the order first seen; None: a worker thread
    session: int | None = None  # the SQLAlchemy session, numbered in the order made


@dataclass(frozen=True, kw_only=True, slots=True)  # slots: a long run holds many
class Diagnosis:
    """Why a request failed, as far as the trace shows it."""

    kind: CauseKind
    text: str
    threads: tuple[int, ...]
    requests: tuple[str, ...]  # the ids of the requests involved, the failed one first
    connection: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)  # slots: a long run holds many
class RequestRecord:
    """One request, from the moment it was sent to its outcome."""

    variant: str
    trial: int
    phase: Phase
    index: int
    request_id: str
    method: str
    path: str
    planned_offset: float | None
    sent_at: float
    completed_at: float | None
    status: int | None
    outcome: Outcome
    error: str | None = None
    exceptions: tuple[ServerException, ...] = ()
    diagnosis: Diagnosis | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionSample:
    """The connections to a build's database open at one moment of its trial, as the database server counted them."""

    time: float  # seconds from the schedule's start
    open: int


@dataclass(frozen=True, kw_only=True)
class TrialResult:
    """One variant's server through one trial: every request, every server-side exception."""

    variant: str
    trial: int
    started_at: str
    server_dir: str
    pid: int | None
    port: int | None
    records: tuple[RequestRecord, ...]
    unmatched_exceptions: tuple[ServerException, ...] = ()
    error: str | None = None
    server_exit_code: int | None = None  # set when the server exited before the harness stopped it
    trace: tuple[TraceEvent, ...] = ()
    trace_truncated: bool = False  # the server wrote harness.server.tracer.DEFAULT_TRACE_LIMIT events, then stopped
    database: Database = DEFAULT_DATABASE
    # On PostgreSQL, from pg_stat_activity: the open connections whenever their number changed, the most at
    # once, and those still open DEFAULT_LEAK_WAIT after the last response (None: not counted).
    connections: tuple[ConnectionSample, ...] = ()
    peak_connections: int | None = None
    leaked_connections: int | None = None
    # From the trace, on any database: connections the app opened and never closed (a pool's: never gave back),
    # the most it held at once, and whether it kept them in a pool.
    unclosed_connections: int | None = None
    most_checked_out: int | None = None
    pooled: bool = False


@dataclass(frozen=True, kw_only=True)
class ExceptionCount:
    """Server-side exceptions of one type and message, with one full traceback."""

    type: str
    message: str
    count: int
    first_request_id: str
    traceback: str


@dataclass(frozen=True, kw_only=True)
class FailureCount:
    """What a variant's failed requests most often ended in: an exception's type and first line, or their outcome."""

    what: str
    count: int


@dataclass(frozen=True, kw_only=True)
class CauseCount:
    """Failed requests of one variant whose diagnoses are of one kind, with one in full."""

    kind: CauseKind
    count: int
    first_request_id: str
    example: str


@dataclass(frozen=True, kw_only=True)
class Rate:
    """``count`` of ``total`` with the Wilson 95% interval of the rate."""

    count: int
    total: int
    low: float
    high: float

    @property
    def estimate(self) -> float | None:
        return self.count / self.total if self.total else None


@dataclass(frozen=True, kw_only=True)
class Power:
    """How likely a clean variant's trials were to catch a build as broken as the reference, and what rules one out.

    ``at_estimate`` uses the reference's measured per-trial failure rate, ``at_low`` the low
    end of its 95% interval. ``favourable_pairs`` is the evidence ``--confidence`` decides on
    (:func:`harness.stats.clean_is_decided`): the trials a reference variant failed whose
    trial of the same number this variant passed, counted against each reference variant,
    the fewest of those counts. A build failing at least as often as that variant shows as
    many with chance at most ``2 ** -favourable_pairs``.
    """

    reference: tuple[str, ...]
    reference_rate: Rate
    trials: int
    at_estimate: float
    at_low: float
    favourable_pairs: int


@dataclass(frozen=True, kw_only=True)
class VariantSummary:
    """Counts for one variant over all its trials; requests are the schedule's."""

    variant: str
    trials: int
    failed_trials: int
    error_trials: int
    requests: int
    ok: int
    client_errors: int
    server_errors: int
    transport_errors: int
    timeouts: int
    interrupted: int
    seed_requests: int
    seed_server_errors: int
    first_failed_trial: int | None
    exceptions: tuple[ExceptionCount, ...]
    trial_failure_rate: Rate
    request_failure_rate: Rate
    causes: tuple[CauseCount, ...] = ()
    # On PostgreSQL: the most connections open at once in any trial, the most left open after one, and in how
    # many trials any was left open. None: not counted (SQLite, or no trial got that far).
    peak_connections: int | None = None
    leaked_connections: int | None = None
    leaking_trials: int = 0
    unclosed_connections: int | None = None  # the most in a trial, from the trace; None: no trace of the app's ORM
    most_checked_out: int | None = None  # the most the app held at once in a trial, from the trace
    pooled: bool = False  # the trace shows a pool: connections the app gave back stay open in it
    # With fail_on "leak": the trials that failed on one, their trace showing more connections never closed than
    # the scenario's leak_threshold (counted in failed_trials too; a trial may also have failed on a request).
    leak_trials: int = 0
    most_common_failure: FailureCount | None = None  # among the schedule's requests that failed by fail_on

    @property
    def leaks(self) -> bool:
        """Whether the app left connections behind: by its trace if there is one, else as the server saw it.

        A pool keeps connections open that the app gave back: the server sees them, the trace
        tells them apart.
        """
        if self.unclosed_connections is not None:
            return self.unclosed_connections > 0
        return self.leaking_trials > 0


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What a variant was expected to do, what it did, and the sentence that says so."""

    variant: str
    expected: Expectation
    observed: Observed
    kind: VerdictKind
    reason: str
    power: Power | None = None
    confidence: float | None = None  # the level asked for with --confidence; None: a fixed number of trials


@dataclass(frozen=True, kw_only=True)
class ScheduleStep:
    """One step of an explored schedule: a thread-pool call of one request run on one worker, from its start or a
    scheduling point inside it (one of SQLAlchemy's hooks) to its end or its next scheduling point."""

    index: int
    request: int  # the request's number in the schedule (A is 0)
    call: str  # what the call was, in FastAPI's words: "dependency enter (get_db)", "endpoint (read_users)", ...
    worker: int  # the worker thread it ran on, numbered from 1 in the order the schedule made them
    preempted: bool  # the request that ran the step before could have gone on, and another was chosen
    error: str | None  # what the call raised: "OperationalError: Connection already opened."
    # Where the step began: "call" (its start), or the scheduling point it resumed the call from ("commit",
    # "checkout"...). None in a record made before calls had scheduling points: its start.
    point: str | None = None

    @property
    def resumes(self) -> bool:
        """Whether the step went on with a call paused at a scheduling point (on that call's own worker)."""
        return self.point not in (None, "call")


@dataclass(frozen=True, kw_only=True)
class ExploreResult:
    """What explore mode's search found for one build (harness.explore, docs/explore.md)."""

    variant: str
    app: str  # what the build served, "module:attr": a replay runs the schedule on the same app
    strategy: Strategy
    depth: int
    bound: int
    requests: int  # requests each schedule sent
    schedules: int  # schedules run
    most_steps: int  # the most steps a schedule took: PCT's k
    exhausted: bool  # bounded: every schedule within the bound was run
    seconds: float
    searched: str = ""  # what the search ran and found, in one line (harness.search)
    guarantee: float | None = None  # PCT, no failure: the least probability a bug of ``depth`` would have shown
    incomplete: int = 0  # schedules whose requests had not all finished when the server's time ran out
    failed_schedule: int | None = None  # the first failing schedule's number, from 1
    seed: int | None = None  # its PCT seed
    failure: str | None = None  # what failed, "OperationalError: Connection already opened."
    choices: tuple[int, ...] = ()  # the failing schedule, as it was found
    shrunk_requests: tuple[int, ...] = ()  # the fewest of its requests that still fail ...
    shrunk_choices: tuple[int, ...] = ()  # ... with the fewest deviations
    steps: tuple[ScheduleStep, ...] = ()  # the shrunk schedule, step by step
    replayed: bool | None = None  # whether the shrunk schedule failed the same way again in a fresh server
    schedule_file: str | None = None  # where it was saved, for harness replay
    error: str | None = None  # the search could not be carried out (a server that did not start, ...)

    @property
    def failed(self) -> bool:
        return self.failed_schedule is not None

    @property
    def shrunk_deviations(self) -> int:
        """The shrunk schedule's choices that are not anyio's own."""
        return sum(1 for choice in self.shrunk_choices if choice)


@dataclass(frozen=True, kw_only=True)
class RunResult:
    scenario: Scenario
    variants: tuple[str, ...]
    started_at: str
    duration: float
    complete: bool
    environment: dict[str, str]
    trials: tuple[TrialResult, ...]
    summaries: tuple[VariantSummary, ...]
    verdicts: tuple[Verdict, ...]
    exit_code: ExitCode
    jobs: int = 1
    confidence: float | None = None
    trace: bool = True  # the servers ran with the tracer
    url: str | None = None  # a server the user started (harness run --url): no probe, no trace in it
    databases: dict[str, Database] = dataclasses.field(default_factory=dict)  # each variant's; absent: SQLite
    database_server: str | None = None  # the PostgreSQL server the trials' databases were made on, if any
    # Of a run merged from runs made elsewhere (the pytest plugin's items): where each variant ran, "host (gw1)".
    hosts: dict[str, str] = dataclasses.field(default_factory=dict)
    explore: tuple[ExploreResult, ...] = ()  # explore mode's search, per variant; none: trials at the OS's timing
    # The builds with an interpreter of their own (python = in their variant): its path, Python and stack, by
    # variant, as the environment records the harness's own; a build absent here ran on the harness's.
    interpreters: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def trials_run(self) -> int:
        """How many trials were started; every variant takes part in each (read without its trials too)."""
        return max((summary.trials for summary in self.summaries), default=0)

    def to_dict(self) -> dict[str, Any]:
        # The scenario as its own file has it, which is what Scenario.from_dict validates.
        return {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(self), "scenario": self.scenario.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        if data.get("document") == "sweep":
            raise ResultsError("this is the results file of a sweep (harness sweep), not of a run")
        result = _from_document(cls, data, {"schema_version"})
        _check_variants(result)
        _check_confidences(result)
        return result


@dataclass(frozen=True, kw_only=True)
class SweepCell:
    """One point of a sweep's grid: ``in_flight`` requests sent at once, waves ``interval`` tutorial-seconds apart.

    ``database`` is what the builds run on in it, unless a build names its own.
    """

    interval: float
    in_flight: int
    database: Database = DEFAULT_DATABASE


@dataclass(frozen=True, kw_only=True)
class CellResult:
    """One cell of a sweep measured as a run of its own (in ``run_dir``, relative to the sweep's folder).

    ``stage`` is "grid" for the sweep's trials of every cell, "confirm" for the extra trials of a
    candidate; ``cost`` is requests per trial times planned seconds per trial (:mod:`harness.sweep`).
    """

    cell: SweepCell
    stage: Stage
    requests: int
    cost: float
    run_dir: str
    duration: float
    complete: bool
    summaries: tuple[VariantSummary, ...]
    detects: bool


@dataclass(frozen=True, kw_only=True)
class SweepSettings:
    """What a sweep was asked to measure (:mod:`harness.grid`): its grid, trials, time scale and target."""

    intervals: tuple[float, ...]
    in_flight: tuple[int, ...]
    waves: int
    trials: int
    confirm_trials: int
    time_scale: float
    target: float
    jobs: int
    databases: tuple[Database, ...] = (DEFAULT_DATABASE,)

    @property
    def size(self) -> int:
        return len(self.intervals) * len(self.in_flight) * len(self.databases)


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    """A sweep: every cell measured so far, and the cheapest one that detected (``winner``)."""

    settings: SweepSettings
    variants: tuple[str, ...]
    started_at: str
    duration: float
    estimated_seconds: float
    complete: bool
    limit_reached: bool  # --max-seconds stopped it before every cell (or a confirmation) was run
    environment: dict[str, str]
    cells: tuple[CellResult, ...]
    winner: SweepCell | None
    exit_code: ExitCode

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "document": "sweep", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepResult:
        if data.get("document") != "sweep":
            raise ResultsError("this is the results file of a run (harness run), not of a sweep")
        return _from_document(cls, data, {"schema_version", "document"})


def _from_document(cls: type[_T], data: dict[str, Any], envelope: set[str]) -> _T:
    """A document of this schema version without its ``envelope`` keys, rebuilt as ``cls``."""
    version = data.get("schema_version")
    if isinstance(version, int) and version < SCHEMA_VERSION:
        raise ResultsError(
            f"results schema version {version} was written by an older harness; this one reads version "
            f"{SCHEMA_VERSION} (run the scenario again for a new file)"
        )
    if version != SCHEMA_VERSION:
        raise ResultsError(f"results schema version {version!r} is not supported (expected {SCHEMA_VERSION})")
    fields = {key: value for key, value in data.items() if key not in envelope}
    try:
        return rebuild(cls, fields)
    except ValueError as exc:
        raise ResultsError(f"results document does not match schema {SCHEMA_VERSION}: {exc}") from None
    except ScenarioError as exc:
        raise ResultsError(f"results document does not match schema {SCHEMA_VERSION}: {exc.message}") from None


def _check_variants(result: RunResult) -> None:
    """A run whose summaries, verdicts or trials are not of its variants, each once, is not one the harness wrote."""
    for what, names in (
        ("summaries", [summary.variant for summary in result.summaries]),
        ("verdicts", [verdict.variant for verdict in result.verdicts]),
    ):
        if names != list(result.variants):
            raise ResultsError(f"its {what} are of {names}, its variants are {list(result.variants)}")
    if len(set(result.variants)) != len(result.variants):
        raise ResultsError(f"its variants {list(result.variants)} name one twice")
    strangers = {trial.variant for trial in result.trials} - set(result.variants)
    if strangers:
        raise ResultsError(f"its trials are of variants it does not run: {', '.join(sorted(strangers))}")


def _check_confidences(result: RunResult) -> None:
    """A confidence is what --confidence accepts: at 1, no number of favourable pairs would ever reach it."""
    levels = [("confidence", result.confidence)]
    levels += [(f"verdicts[{i}].confidence", v.confidence) for i, v in enumerate(result.verdicts)]
    for where, level in levels:
        if level is not None:
            try:
                Fraction()(level)
            except ValueError as exc:
                raise ResultsError(f"results document does not match schema {SCHEMA_VERSION}: {where}: {exc}") from None


def write_results(result: RunResult | SweepResult, path: Path) -> None:
    """The whole record: a sweep's document; a run's ``results.json`` and every trial in ``trials.jsonl`` beside it."""
    if isinstance(result, RunResult):
        with atomic_writer(path.with_name(TRIALS_FILE)) as file:
            file.writelines(_trial_line(trial) for trial in result.trials)
    write_summary(result, path)


def write_summary(result: RunResult | SweepResult, path: Path) -> None:
    """``results.json`` alone: a run's trials are in ``trials.jsonl``, written by :class:`TrialLog` as they end."""
    data = result.to_dict() if isinstance(result, SweepResult) else dataclasses.replace(result, trials=()).to_dict()
    data.pop("trials", None)
    with atomic_writer(path) as file:
        json.dump(data, file, indent=1)


class TrialLog(JsonLines):
    """``trials.jsonl``, appended one line per trial: what is written is never written again."""

    def append(self, trial: TrialResult) -> None:
        self.add(pack_trial(trial))


def _trial_line(trial: TrialResult) -> str:
    return json.dumps(pack_trial(trial)) + "\n"


def read_results(path: Path, *, with_trials: bool = True) -> RunResult:
    """A run's record: ``results.json`` and the trials in ``trials.jsonl`` beside it (or none: the summaries alone)."""
    return _run_record(path, _read_document(path), with_trials=with_trials)


def _run_record(path: Path, data: dict[str, Any], *, with_trials: bool = True) -> RunResult:
    with _naming(path):
        if data.get("document") == "sweep" or "trials" in data:
            return RunResult.from_dict(data)  # a sweep, refused; or a document with its trials in it
        result = RunResult.from_dict({**data, "trials": []})
    if not with_trials:
        return result
    trials_path = path.with_name(TRIALS_FILE)
    if result.trials_run and not trials_path.exists():
        raise ResultsError(f"{trials_path} is missing: the run's trials are there, beside {path.name}")
    with _naming(trials_path):
        return _with_trials(result, _read_trial_lines(trials_path))


@contextlib.contextmanager
def _naming(path: Path | str) -> Iterator[None]:
    """A results error met while reading what ``path`` holds, with the path in front."""
    try:
        yield
    except ResultsError as exc:
        raise ResultsError(f"{path}: {exc.message}") from None


def _with_trials(result: RunResult, lines: Sequence[Any]) -> RunResult:
    """The run with the trials of these lines of ``trials.jsonl`` (the first line is line 1)."""
    trials = []
    for number, line in enumerate(lines, 1):
        try:
            trials.append(unpack_trial(_checked(line, dict, "", "an object")))
        except (ValueError, LookupError, TypeError) as exc:  # LookupError, TypeError: rows that do not fit columns
            raise ResultsError(f"line {number} does not match schema {SCHEMA_VERSION}: {exc}") from None
    with_trials = dataclasses.replace(result, trials=tuple(trials))
    _check_variants(with_trials)
    return with_trials


def _read_trial_lines(path: Path) -> list[Any]:
    """The lines of ``trials.jsonl``, each a JSON value; a missing file has none.

    A last line cut short, with no newline after it, is left out: its writer was killed,
    and the trial is still in the journal (``harness recover``). Any other line that is
    not JSON is damage, a results error.
    """
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ResultsError(f"cannot read it: {exc.strerror or exc}") from None
    lines = text.split(b"\n")
    values = []
    for number, line in enumerate(lines, 1):
        if not line and number == len(lines):
            break  # after the last newline
        try:
            values.append(_loads(line))
        except ValueError as exc:
            if number == len(lines):
                break  # cut short
            raise ResultsError(f"line {number} is not JSON ({exc})") from None
    return values


def _loads(text: str | bytes) -> Any:
    """The JSON value of ``text``, which must be UTF-8; NaN and Infinity, which are not JSON, and nesting deeper
    than Python can follow are refused (``ValueError``)."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deep") from None


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON can hold")


def pack_record(path: Path) -> str:
    """A run's whole record, ``path`` and the trials beside it, as one line of ASCII: compressed, then base64.

    For a channel that carries text (pytest-xdist's, from a worker on another machine):
    the trials go as ``trials.jsonl`` holds them, and a record written as far as a killed
    run got is sent as far as it got.
    """
    record = {"results": _read_document(path), "trials": read_json_lines(path.with_name(TRIALS_FILE))}
    return base64.b64encode(zlib.compress(json.dumps(record, separators=(",", ":")).encode())).decode("ascii")


def unpack_record(text: str) -> RunResult:
    """The run :func:`pack_record` packed, trials and all (:func:`write_results` writes it out again)."""
    try:
        record = _loads(zlib.decompress(base64.b64decode(text, validate=True)))
        data, lines = {**record["results"], "trials": []}, _checked(record["trials"], list, "trials", "a list")
    except (ValueError, TypeError, KeyError, zlib.error) as exc:
        raise ResultsError(f"not a packed run record: {exc}") from None
    with _naming("a packed run record"):
        return _with_trials(RunResult.from_dict(data), lines)


def pack_trial(trial: TrialResult) -> dict[str, Any]:
    """One line of ``trials.jsonl``: the trial's requests, exceptions and trace events as rows.

    ``columns`` names a row's values once per kind of row (``RequestRecord``,
    ``ServerException``, ``TraceEvent``); a row leaves out its trailing values that are the
    field's default. In a row a text is its index in ``texts``: a 5xx's traceback, the same
    for most failed requests, and a request id, which the trace names in most of its
    events, are written once. Lossless: :func:`unpack_trial` gives the trial back.
    """
    texts: dict[str, int] = {}
    columns: dict[str, list[str]] = {}

    def pack(value: Any) -> Any:
        if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            fields = dataclasses.fields(value[0])
            columns.setdefault(type(value[0]).__name__, [f.name for f in fields])
            defaults = [pack(f.default) if f.default is not dataclasses.MISSING else _NO_DEFAULT for f in fields]
            return [_trimmed([pack(getattr(item, f.name)) for f in fields], defaults) for item in value]
        if isinstance(value, tuple):
            return list(value)
        if isinstance(value, str):
            return texts.setdefault(value, len(texts))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        return value

    hints = _hints(TrialResult)
    line = {name: pack(value) if _table_element(hints[name]) else value for name, value in vars(trial).items()}
    return {**line, "columns": columns, "texts": list(texts)}


def unpack_trial(line: dict[str, Any]) -> TrialResult:
    """The trial :func:`pack_trial` wrote as ``line``."""
    _require(("texts", "columns", *_required(TrialResult)), line, "")
    texts = _build(tuple[str, ...], line["texts"], "texts")
    columns = _build(dict[str, tuple[str, ...]], line["columns"], "columns")

    def table(element: type, value: Any, at: str) -> tuple[Any, ...]:
        hints = _hints(element)
        names = columns.get(element.__name__, ()) if value else ()  # a row may be short of its trailing defaults
        if unknown := set(names) - set(hints):
            raise ValueError(f"columns.{element.__name__}: no such fields: {', '.join(sorted(unknown))}")
        rows = []
        for i, row in enumerate(_checked(value, list, at, "a list")):
            cells = _checked(row, list, f"{at}[{i}]", "a list")
            fields = {c: cell(hints[c], item, f"{at}[{i}].{c}") for c, item in zip(names, cells, strict=False)}
            _require(_required(element), fields, f"{at}[{i}]")
            rows.append(element(**fields))
        return tuple(rows)

    def cell(annotation: Any, value: Any, at: str) -> Any:
        if value is not None and _is_text(annotation):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(texts):
                raise ValueError(f"{at}: {_shown(value)} is not the number of one of its {len(texts)} texts")
            return _build(annotation, texts[value], at)  # a Literal's too: one of its values
        element = _table_element(annotation)
        return _build(annotation, value, at) if element is None else table(element, value, at)

    fields: dict[str, Any] = {}
    for name, hint in _hints(TrialResult).items():
        if name in line:
            element = _table_element(hint)
            fields[name] = _build(hint, line[name], name) if element is None else table(element, line[name], name)
    return TrialResult(**fields)


_NO_DEFAULT = object()


def _trimmed(row: list[Any], defaults: list[Any]) -> list[Any]:
    """``row`` without its trailing values that are their field's default (packed)."""
    end = len(row)
    while end and row[end - 1] == defaults[end - 1]:
        end -= 1
    return row[:end]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A dataclass's fields and their types: resolved once per class, not for each of a run's 100,000 trace events."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@functools.cache
def _table_element(annotation: Any) -> type | None:
    """``X`` of ``tuple[X, ...]`` when ``X`` is a dataclass: a table in a packed trial."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple and args and dataclasses.is_dataclass(args[0]):
        return typing.cast(type, args[0])
    return None


@functools.cache
def _is_text(annotation: Any) -> bool:
    """Whether values of ``annotation`` are text (``str``, a ``Literal`` of strings, either or None)."""
    if annotation is str:
        return True
    if typing.get_origin(annotation) is Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return all(_is_text(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return False


def read_sweep(path: Path) -> SweepResult:
    data = _read_document(path)
    with _naming(path):
        return SweepResult.from_dict(data)


def read_document(path: Path) -> RunResult | SweepResult:
    """A run's or a sweep's results, whichever the file holds."""
    data = _read_document(path)
    if data.get("document") == "sweep":
        with _naming(path):
            return SweepResult.from_dict(data)
    return _run_record(path, data)


def _read_document(path: Path) -> dict[str, Any]:
    try:
        data = _loads(path.read_bytes())
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read results file: {exc.strerror or exc}") from None
    except ValueError as exc:  # UnicodeDecodeError too
        raise ResultsError(f"{path}: not a JSON results file ({exc})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: not a JSON results file (its top level is {_shown(data)}, not an object)")
    return data


def rebuild(annotation: type[_T], value: Any) -> _T:
    """Rebuild a value of the type ``annotation`` from what ``dataclasses.asdict`` made of it.

    Every value is held to its field's type, so a damaged or hand-edited file is refused here,
    with the place of the first wrong value (``ValueError``), not by whatever reads it later.
    """
    return typing.cast(_T, _build(annotation, value, ""))


_LARGEST_INT = 2**53  # JSON's exact integers: no count, pid, port or time of a record is larger


def _build(annotation: Any, value: Any, at: str) -> Any:
    if annotation is Scenario:
        return Scenario.from_dict(_checked(value, dict, at, "an object"))
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        data = _checked(value, dict, at, "an object")
        hints = _hints(annotation)
        _require(_required(annotation), data, at)
        return annotation(
            **{key: _build(hints[key], item, _key(at, key)) for key, item in data.items() if key in hints}
        )
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is tuple:
        return tuple(_build(args[0], item, f"{at}[{i}]") for i, item in enumerate(_checked(value, list, at, "a list")))
    if origin is dict:
        data = _checked(value, dict, at, "an object")
        return {key: _build(args[1], item, f"{at}[{key!r}]") for key, item in data.items()}  # any key: quoted
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (kind,) = (arg for arg in args if arg is not type(None))
        return _build(kind, value, at)
    if origin is Literal:
        if not isinstance(value, str) or value not in args:
            raise ValueError(f"{at}: expected one of {', '.join(map(repr, args))}, got {_shown(value)}")
        return value
    if annotation is bool:
        return _checked(value, bool, at, "true or false")
    if annotation is str:
        return _checked(value, str, at, "a string")
    if annotation in (int, float) or annotation is ExitCode:
        number = _number(value, at, whole=annotation is not float)
        if annotation is ExitCode:
            if number not in ExitCode.__members__.values():
                raise ValueError(f"{at}: {number} is not an exit code of the harness")
            return ExitCode(int(number))
        return number
    raise TypeError(f"{at}: no reader for values of type {annotation!r}")  # a field added without one


def _number(value: Any, at: str, *, whole: bool) -> int | float:
    """``value`` if it is a finite number (a whole one if ``whole``) within JSON's exact integers."""
    number: int | float
    if (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and not whole):
        number = value
    else:
        raise ValueError(f"{at}: expected {'an integer' if whole else 'a number'}, got {_shown(value)}")
    if not math.isfinite(number) or abs(number) > _LARGEST_INT:
        raise ValueError(f"{at}: {_shown(number)} is out of range")
    return number


def _checked(value: Any, kind: type[_T], at: str, what: str) -> _T:
    if not isinstance(value, kind):
        raise ValueError(f"{at + ': ' if at else ''}expected {what}, got {_shown(value)}")
    return value


@functools.cache
def _required(cls: type) -> tuple[str, ...]:
    """The fields of a dataclass that have no default."""
    return tuple(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )


def _require(keys: Iterable[str], data: dict[str, Any], at: str) -> None:
    missing = [key for key in keys if key not in data]
    if missing:
        raise ValueError(f"{at + ': ' if at else ''}missing {', '.join(missing)}")


def _key(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def _shown(value: Any) -> str:
    """A value in an error message: its type for a container, else itself, cut to a line."""
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "a list"
    text = "null" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
