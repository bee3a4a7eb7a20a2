"""Replay a scenario against one running server and record every request.

Each request is noted when it is sent and again when its outcome is known (as Jepsen
does), so a request cut off by Ctrl-C is kept as ``interrupted`` instead of dropped.
Every request carries an id in ``x-harness-request-id``; the probe in the server files
exceptions under that id, and :func:`attach_exceptions` joins the two.
"""

from __future__ import annotations

import functools
import itertools
import json
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from harness.diagnosis import diagnose
from harness.errors import SeedError
from harness.files import read_json_lines
from harness.results import (
    Outcome,
    Phase,
    RequestRecord,
    ServerException,
    TraceEvent,
    TrialResult,
    microseconds,
    rebuild,
)
from harness.scenario import HttpRequest, Scenario, Seed
from harness.server.probe import REQUEST_ID_HEADER
from harness.trace import most_checked_out, read_trace, shows_pool, traces_orm, unclosed_connections

if TYPE_CHECKING:
    from harness.launcher import Server

DEFAULT_SEED_ATTEMPTS = 5
SEED_BODY_LIMIT = 2**20  # bytes of an answer the tutorial's seeding reads (a user, or the list of them)


class Recorder:
    """The requests of one variant's trial; times are seconds from the schedule's start, to the microsecond."""

    def __init__(self, *, variant: str, trial: int, on_change: Callable[[RequestRecord], None] | None = None) -> None:
        self.variant = variant
        self.trial = trial
        self.origin = time.perf_counter()
        self._pending: dict[str, RequestRecord] = {}
        self._done: list[RequestRecord] = []
        self._on_change = on_change

    def clock(self) -> float:
        return microseconds(time.perf_counter() - self.origin)

    def start_schedule(self) -> None:
        """Make now time zero: shift what was recorded so far (the seeding) to negative times."""
        shift = self.clock()
        self.origin += shift
        self._done = [
            replace(r, sent_at=microseconds(r.sent_at - shift), completed_at=_minus(r.completed_at, shift))
            for r in self._done
        ]
        for record in self._done:
            self._changed(record)

    def request_id(self, phase: Phase, index: int) -> str:
        """The id the request ``index`` of ``phase`` is sent with (the probe keys its exceptions by it)."""
        return f"{self.variant}-t{self.trial}-{phase}-{index}"

    def begin(self, *, phase: Phase, index: int, method: str, path: str, planned_offset: float | None) -> str:
        request_id = self.request_id(phase, index)
        self._pending[request_id] = record = RequestRecord(
            variant=self.variant,
            trial=self.trial,
            phase=phase,
            index=index,
            request_id=request_id,
            method=method,
            path=path,
            planned_offset=planned_offset,
            sent_at=self.clock(),
            completed_at=None,
            status=None,
            outcome="interrupted",
        )
        self._changed(record)
        return request_id

    def finish(self, request_id: str, *, status: int | None, outcome: Outcome, error: str | None = None) -> None:
        record = self._pending.pop(request_id)
        self._done.append(
            done := replace(record, completed_at=self.clock(), status=status, outcome=outcome, error=error)
        )
        self._changed(done)

    def _changed(self, record: RequestRecord) -> None:
        if self._on_change:
            self._on_change(record)

    def records(self) -> list[RequestRecord]:
        """Everything so far, unfinished requests included, seed first, then by index."""
        return in_trial_order([*self._done, *self._pending.values()])


def in_trial_order(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    """Seed requests first, then the schedule's, each by index: the order a trial's records are kept in."""
    return sorted(records, key=lambda r: (r.phase != "seed", r.index))


async def run_trial(client: httpx.AsyncClient, scenario: Scenario, recorder: Recorder) -> None:
    """Seed the app, then fire the scenario's schedule at its planned offsets."""
    await seed_scenario(client, scenario, recorder)
    recorder.start_schedule()
    schedule = scenario.schedule
    async with anyio.create_task_group() as tg:
        for index, offset in enumerate(schedule.offsets(scenario.time_scale)):
            tg.start_soon(_send_at, client, recorder, index, offset, schedule.request)


async def seed_scenario(client: httpx.AsyncClient, scenario: Scenario, recorder: Recorder) -> None:
    """What the scenario creates before its schedule: the tutorial's users, or its seed steps."""
    if isinstance(scenario.seed, Seed):
        await seed_tutorial(client, scenario.seed, recorder)
    else:
        await seed_steps(client, scenario.seed, recorder)


def make_client(base_url: str, scenario: Scenario) -> httpx.AsyncClient:
    """A client that never queues the schedule and opens a connection per request.

    A connection per request is what separate browser tabs have, and it keeps a
    connection that uvicorn closed after a 500 from failing the next request.
    """
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=scenario.request_timeout,
        limits=httpx.Limits(max_connections=scenario.schedule.requests + 1, max_keepalive_connections=0),
        trust_env=False,
        verify=_tls_context(),
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default verification, its CA bundle loaded once: 20 ms a client, and a run makes one per trial."""
    return httpx.create_ssl_context()


def read_events(path: Path) -> list[ServerException]:
    """The probe's events; a last line cut short by a killed server is skipped.

    A traceback repeated by many failed requests is kept once: a long run holds them all.
    """
    events = []
    tracebacks: dict[str, str] = {}
    for data in read_json_lines(path):
        try:
            event = rebuild(ServerException, data)
        except ValueError:
            continue  # a line of another shape
        events.append(replace(event, traceback=tracebacks.setdefault(event.traceback, event.traceback)))
    return events


def attach_exceptions(
    records: Iterable[RequestRecord], events: Iterable[ServerException]
) -> tuple[list[RequestRecord], list[ServerException]]:
    """Give each record the exceptions filed under its id; return what matched no record."""
    by_id: dict[str, list[ServerException]] = {}
    for event in events:
        by_id.setdefault(event.request_id, []).append(event)
    joined = [replace(record, exceptions=tuple(by_id.pop(record.request_id, ()))) for record in records]
    unmatched = [event for group in by_id.values() for event in group]
    return joined, unmatched


async def _send_at(
    client: httpx.AsyncClient, recorder: Recorder, index: int, offset: float, request: HttpRequest
) -> None:
    await anyio.sleep(max(0.0, offset - recorder.clock()))
    path, body, headers = request.render(i=index, trial=recorder.trial)
    await send(
        client,
        recorder,
        request.method,
        path,
        phase="schedule",
        index=index,
        planned_offset=offset,
        body=body,
        headers=headers,
    )


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What the harness keeps of a response: its status, and its body only where a step reads it."""

    status: int
    body: bytes = b""  # at most the step's limit; empty where the body was drained
    too_long: bool = False  # the body passed the step's limit: the rest was not read

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


async def send(
    client: httpx.AsyncClient,
    recorder: Recorder,
    method: str,
    path: str,
    *,
    phase: Phase,
    index: int,
    planned_offset: float | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    keep: int = 0,
) -> Answer | None:
    """Send one request and record it; its body is drained as it arrives, and up to ``keep`` bytes of it kept.

    Only the status is recorded: a body held whole would grow the harness by its size, for every
    request in flight (ten 100 MB answers were 2.2 GB).
    """
    request_id = recorder.begin(phase=phase, index=index, method=method, path=path, planned_offset=planned_offset)
    try:
        async with client.stream(
            method, path, json=body, headers={**(headers or {}), REQUEST_ID_HEADER: request_id}
        ) as response:
            answer = await _read(response, keep)
    except httpx.TimeoutException as exc:
        recorder.finish(request_id, status=None, outcome="timeout", error=_describe(exc))
        return None
    except httpx.TransportError as exc:
        recorder.finish(request_id, status=None, outcome="transport-error", error=_describe(exc))
        return None
    recorder.finish(request_id, status=answer.status, outcome=_outcome(answer.status))
    return answer


async def _read(response: httpx.Response, keep: int) -> Answer:
    """The response's body read to its end and dropped, or its first ``keep`` bytes (decoded) kept."""
    if not keep:
        async for _ in response.aiter_raw():
            pass
        return Answer(status=response.status_code)
    kept = bytearray()
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) > keep:  # leaving the stream closes the connection: the rest is never read
            return Answer(status=response.status_code, too_long=True)
    return Answer(status=response.status_code, body=bytes(kept))


async def seed_steps(client: httpx.AsyncClient, steps: Sequence[HttpRequest], recorder: Recorder) -> None:
    """Send each seed step's requests in order, each retried until it answers 2xx.

    A build under test may drop set-up requests the way it drops the schedule's; they are
    recorded, retried and counted apart.
    """
    counter = itertools.count()
    for step in steps:
        for i in range(step.repeat):
            path, body, headers = step.render(i=i, trial=recorder.trial)
            seen = []
            for _ in range(DEFAULT_SEED_ATTEMPTS):
                answer = await send(
                    client, recorder, step.method, path, phase="seed", index=next(counter), body=body, headers=headers
                )
                if answer is not None and answer.is_success:
                    break
                seen.append(f"HTTP {answer.status}" if answer is not None else "no answer")
            else:
                raise SeedError(
                    f"seeding failed: {step.method} {path} did not answer 2xx in {DEFAULT_SEED_ATTEMPTS} attempts "
                    f"({', '.join(seen)})"
                )


async def seed_tutorial(client: httpx.AsyncClient, seed: Seed, recorder: Recorder) -> None:
    """Create users with items, as the tutorial asks, retrying what the unpatched build drops."""
    counter = itertools.count()

    async def attempt(method: str, path: str, body: dict[str, Any] | None, done: set[int]) -> Answer:
        for _ in range(DEFAULT_SEED_ATTEMPTS):
            answer = await send(
                client, recorder, method, path, phase="seed", index=next(counter), body=body, keep=SEED_BODY_LIMIT
            )
            if answer is not None and answer.status in done:
                return answer
        raise SeedError(f"seeding failed: {method} {path} did not succeed in {DEFAULT_SEED_ATTEMPTS} attempts")

    for user in range(seed.users):
        email = f"user{user}@example.com"
        created = await attempt("POST", "/users/", {"email": email, "password": "secret"}, {200, 400})
        if created.status == 400:  # an earlier attempt created it, then failed
            listing = _json(await attempt("GET", "/users/", None, {200}), "GET /users/", list)
            user_id = next((u.get("id") for u in listing if isinstance(u, dict) and u.get("email") == email), None)
            if user_id is None:
                raise SeedError(f"seeding failed: {email} was refused as a duplicate but is not listed")
        else:
            user_id = _json(created, "POST /users/", dict).get("id")
            if user_id is None:
                raise SeedError(f"seeding failed: POST /users/ created {email} but answered no id")
        for item in range(seed.items_per_user):
            body = {"title": f"item {item} of {email}", "description": "seeded by the harness"}
            await attempt("POST", f"/users/{user_id}/items/", body, {200})


def _json(answer: Answer, request: str, kind: type[Any]) -> Any:
    """The JSON ``kind`` (a list, a dict) the tutorial's API answers ``request`` with; else a seed error saying why."""
    if answer.too_long:
        raise SeedError(f"seeding failed: {request} answered more than {SEED_BODY_LIMIT // 2**20} MiB")
    try:
        value = json.loads(answer.body)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's parser goes
        value = None
    if not isinstance(value, kind):
        raise SeedError(f"seeding failed: {request} did not answer a JSON {kind.__name__}, as the tutorial's API does")
    return value


def _outcome(status: int) -> Outcome:
    if status >= 500:
        return "server-error"
    if status >= 400:
        return "client-error"
    return "ok"


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _minus(value: float | None, shift: float) -> float | None:
    return None if value is None else microseconds(value - shift)


def trial_result(
    server: Server,
    trial: int,
    recorder: Recorder,
    started_at: str,
    error: str | None,
    server_exit_code: int | None = None,
) -> TrialResult:
    """What one server's trial recorded: its requests, the server's exceptions joined to them, the trace and the
    cause of each 5xx it shows (when the app's ORM, Peewee or SQLAlchemy, is traced)."""
    records, unmatched = attach_exceptions(recorder.records(), read_events(server.events_path))
    trace: list[TraceEvent] = []
    truncated = False
    unclosed = most = None
    if server.trace_path is not None:
        trace, truncated = read_trace(server.trace_path, recorder.origin)
        if traces_orm(trace):  # else there is no connection to tell a cause by
            records = diagnose(records, trace)
            unclosed, most = unclosed_connections(trace), most_checked_out(trace)
    return TrialResult(
        variant=server.variant.name,
        trial=trial,
        started_at=started_at,
        server_dir=str(server.directory),
        pid=server.pid,
        port=server.port,
        records=tuple(records),
        unmatched_exceptions=tuple(unmatched),
        error=error,
        server_exit_code=server_exit_code,
        trace=tuple(trace),
        trace_truncated=truncated,
        database=server.database,
        unclosed_connections=None if truncated else unclosed,
        most_checked_out=None if truncated else most,
        pooled=shows_pool(trace),
    )
