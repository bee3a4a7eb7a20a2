"""Replay a scenario against one running server and record every request.

Each request is noted when it is sent and again when its outcome is known (as Jepsen
does), so a request cut off by Ctrl-C is kept as ``interrupted`` instead of dropped.
Every request carries an id in ``x-harness-request-id``; the probe in the server files
exceptions under that id, and :func:`attach_exceptions` joins the two.
"""

from __future__ import annotations

import functools
import http.cookiejar
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
from harness.flow import Flow
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
from harness.trace import holds, most_checked_out, read_trace, shows_pool, traces_orm, unclosed_connections

if TYPE_CHECKING:
    from harness.launcher import Server

DEFAULT_SEED_ATTEMPTS = 5
SEED_BODY_LIMIT = 2**20  # bytes of an answer a seed reads: the tutorial's (a user, or the list of them), a save's


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
    flow = await seed_scenario(client, scenario, recorder)
    requests = schedule_requests(flow, scenario, range(scenario.schedule.requests), trial=recorder.trial)
    recorder.start_schedule()
    async with anyio.create_task_group() as tg:
        for index, offset in enumerate(scenario.schedule.offsets(scenario.time_scale)):
            tg.start_soon(_send_at, client, recorder, index, offset, requests[index], flow.jar(index))


def schedule_requests(flow: Flow, scenario: Scenario, indexes: Iterable[int], *, trial: int) -> dict[int, HttpRequest]:
    """The schedule's requests numbered ``indexes``, as they are sent: made before the first is, so that one
    that cannot be sent stops the trial before its schedule starts."""
    return {i: flow.request(scenario.schedule.request, i=i, trial=trial, where="[schedule.request]") for i in indexes}


async def seed_scenario(client: httpx.AsyncClient, scenario: Scenario, recorder: Recorder) -> Flow:
    """What the scenario creates before its schedule (the tutorial's users, or its seed steps), and what the
    schedule's requests carry from it: saved values, cookies."""
    flow = Flow(sessions=scenario.sessions)
    if isinstance(scenario.seed, Seed):
        await seed_tutorial(client, scenario.seed, recorder)
    else:
        await seed_steps(client, scenario.seed, recorder, flow)
    return flow


# The client keeps no cookies of its own: each session's are in its jar (harness.flow), and a
# client's jar would hand one session's cookies to every other.
_NO_COOKIES = http.cookiejar.DefaultCookiePolicy(allowed_domains=[])


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
        cookies=http.cookiejar.CookieJar(policy=_NO_COOKIES),
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
    client: httpx.AsyncClient,
    recorder: Recorder,
    index: int,
    offset: float,
    request: HttpRequest,
    jar: httpx.Cookies,
) -> None:
    await anyio.sleep(max(0.0, offset - recorder.clock()))
    await send(client, recorder, request, phase="schedule", index=index, planned_offset=offset, jar=jar)


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
    request: HttpRequest,
    *,
    phase: Phase,
    index: int,
    planned_offset: float | None = None,
    jar: httpx.Cookies | None = None,
    keep: int = 0,
) -> Answer | None:
    """Send one request (rendered) and record it; its body is drained as it arrives, and up to ``keep`` bytes of it
    kept. The cookies of ``jar`` go with it, and those its answer sets are kept there.

    Only the path and status are recorded: a body held whole would grow the harness by its size, for
    every request in flight (ten 100 MB answers were 2.2 GB), and headers and cookies carry secrets.
    """
    request_id = recorder.begin(
        phase=phase, index=index, method=request.method, path=request.path, planned_offset=planned_offset
    )
    outgoing = client.build_request(
        request.method,
        request.path,
        json=request.json,
        data=request.form,
        headers={**request.headers, REQUEST_ID_HEADER: request_id},
        cookies=jar,
    )
    try:
        response = await client.send(outgoing, stream=True)
        try:
            answer = await _read(response, keep)
        finally:
            await response.aclose()
    except httpx.TimeoutException as exc:
        recorder.finish(request_id, status=None, outcome="timeout", error=_describe(exc))
        return None
    except httpx.TransportError as exc:
        recorder.finish(request_id, status=None, outcome="transport-error", error=_describe(exc))
        return None
    if jar is not None:
        jar.extract_cookies(response)
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


async def seed_steps(client: httpx.AsyncClient, steps: Sequence[HttpRequest], recorder: Recorder, flow: Flow) -> None:
    """Send each seed step's requests in order, each retried until it answers 2xx, and save what the step saves.

    A build under test may drop set-up requests the way it drops the schedule's; they are
    recorded, retried and counted apart.
    """
    counter = itertools.count()
    for number, step in enumerate(steps, start=1):
        where = f"[[seed]] step {number} ({step.method} {step.path})"  # as written: no saved value in a message
        keep = SEED_BODY_LIMIT if step.save else 0
        for i in range(step.repeat):
            request = flow.request(step, i=i, trial=recorder.trial, where=where)
            seen = []
            for _ in range(DEFAULT_SEED_ATTEMPTS):
                answer = await send(
                    client, recorder, request, phase="seed", index=next(counter), jar=flow.jar(i), keep=keep
                )
                if answer is not None and answer.is_success:
                    if answer.too_long:
                        raise SeedError(f"seeding failed: {where} answered more than {SEED_BODY_LIMIT // 2**20} MiB")
                    flow.keep(step, answer.body, where=where)
                    break
                seen.append(f"HTTP {answer.status}" if answer is not None else "no answer")
            else:
                attempts = f"{DEFAULT_SEED_ATTEMPTS} attempts ({', '.join(seen)})"
                raise SeedError(f"seeding failed: {where} did not answer 2xx in {attempts}")


async def seed_tutorial(client: httpx.AsyncClient, seed: Seed, recorder: Recorder) -> None:
    """Create users with items, as the tutorial asks, retrying what the unpatched build drops."""
    counter = itertools.count()

    async def attempt(method: str, path: str, body: dict[str, Any] | None, done: set[int]) -> Answer:
        request = HttpRequest(method=method, path=path, json=body)
        for _ in range(DEFAULT_SEED_ATTEMPTS):
            answer = await send(client, recorder, request, phase="seed", index=next(counter), keep=SEED_BODY_LIMIT)
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
            held = holds(trace)
            unclosed, most = unclosed_connections(held), most_checked_out(held)
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
