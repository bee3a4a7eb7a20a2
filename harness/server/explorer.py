"""Explore mode inside a server: the harness, not anyio, decides which thread-pool call runs next, and where.

Installed by the probe before the app is imported (``HARNESS_PROBE_EXPLORE=1``). Starlette
and FastAPI send every sync dependency enter and exit, sync endpoint and response
validation through ``anyio.to_thread.run_sync``, looked up by module attribute at each
call: the explorer puts :meth:`Explorer.run_sync` there, and ``time.sleep`` and
``asyncio.sleep`` beside it. While no schedule is armed each passes straight through to
the real function, so seeding and unarmed requests run as they always do.

A schedule is armed by ``POST /__harness/explore/begin`` (the probe routes it here) with
the ids of its requests and a chooser (:mod:`harness.server.choosers`). From then on the
calls of those requests wait in the dispatcher, and one step at a time:

1. the event loop runs until every armed request is waiting in the dispatcher or finished
   (quiescence, so the order in which requests arrive and wake cannot matter); at most
   ``QUIESCENCE_BOUND`` real seconds, after which it goes on and counts a stall;
2. a *run* decision picks the request that takes the step: index 0 is the request that ran
   the step before, if it has a call waiting or paused (no preemption), then the others by index;
3. to start a call, a *worker* decision picks its thread: the idle workers most recently idle
   first (what anyio does), then a new one, up to ``MAX_WORKERS``;
4. the call runs on that worker, in a copy of its request's context (as anyio runs it), to
   its end or to the next *scheduling point* inside it, and the step is recorded with where
   it began (``call``, or the point it resumed from) and its error if it raised.

The scheduling points are SQLAlchemy's hooks (:mod:`harness.server.sqlalchemy_hooks` calls
:func:`point`): a session's ``execute()``, ``flush()``, ``commit()``, ``close()``... and the
pool's checkout and checkin. A call that reaches one pauses there, keeping its worker, and is
one more option of the next run decision: resumed, it goes on from there on its own worker (no
worker decision), so two requests sharing a session can interleave between its ``flush()``
and its ``commit()``. A step that neither pauses nor ends within ``STEP_BOUND`` real seconds
is *blocked*, most likely on what a paused call holds (SQLite's write lock, taken at a flush
and kept until the commit): the dispatcher counts it and goes on deciding, and the blocked
call pauses or ends when it can; before each decision every running call gets that long
again to do so.

A decision with one option is not recorded; one whose chosen index is not 0 is a
deviation. While armed, ``time.sleep`` in a worker and ``asyncio.sleep`` in an armed
request return at once and add their seconds to a virtual clock. ``POST
/__harness/explore/end`` waits for the requests to finish (or its timeout), answers the
schedule's record, disarms, resumes the paused calls one after the other in the order they
paused (each to its end: none is left waiting for a step that will not come), and ends every
worker thread: no ``threading.local`` outlives its schedule. Requests are numbered by their
place in the begin (from 0), steps and workers counted from 1.

Standard library only at module level; anyio is imported where it is hooked.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import json
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.server import choosers, tracer

MAX_WORKERS = 8  # worker threads per schedule: a schedule of the tutorial's requests needs 2 to show its bug
MAX_REQUESTS = 1_000  # requests per schedule, so a begin cannot ask for unbounded state
MAX_END_TIMEOUT = 3_600.0  # seconds an end may wait
QUIESCENCE_BOUND = 5.0  # real seconds the event loop gets to bring every request to the dispatcher or its end
# Real seconds a step may run before it is deemed blocked and the dispatcher goes on: a step of a
# schedule takes milliseconds, and SQLite's own wait for a lock (5 s) must outlast a few of these.
STEP_BOUND = 0.5
JOIN_BOUND = 5.0  # real seconds an ending schedule waits for its paused calls and for a worker still inside a call
_JOIN_POLL = 0.001

# The real sleeps, taken when this module is first imported (by the probe, before anything wraps them).
_real_sleep = time.sleep
_real_async_sleep = asyncio.sleep

BEGIN_PATH = "/__harness/explore/begin"
END_PATH = "/__harness/explore/end"

Answer = tuple[int, dict[str, Any]]  # an HTTP status and its JSON body


class CannotExplore(Exception):
    """The app's stack does not send its sync code through ``anyio.to_thread.run_sync``: nothing to take over."""


class ScheduleEnded(Exception):
    """A call still waiting when its schedule ended: its request fails instead of waiting for ever."""


@dataclass(kw_only=True, eq=False)
class _Call:
    func: Callable[..., Any]
    args: tuple[Any, ...]
    context: contextvars.Context
    name: str
    done: asyncio.Future[Any]  # what the request awaits: the call's result or its exception


@dataclass(kw_only=True, eq=False)
class ArmedRequest:
    """A request of an armed schedule, from its arrival at the probe to its end."""

    schedule: _Schedule
    index: int
    arrived: bool = False
    finished: bool = False
    status: int | None = None
    failed_step: int | None = None
    calls: collections.deque[_Call] = field(default_factory=collections.deque)  # waiting, not started
    running: int = 0  # its calls started on a worker and neither paused nor ended

    def leave(self, status: int | None) -> None:
        """The app returned or raised for this request, having sent ``status`` (None if nothing)."""
        self.finished, self.status = True, status
        self.schedule.note_change()


@dataclass(kw_only=True, eq=False)
class _Worker:
    number: int
    thread: threading.Thread
    jobs: queue.SimpleQueue[Callable[[], None] | None]
    wake: queue.SimpleQueue[None] = field(default_factory=queue.SimpleQueue)  # a paused call goes on


@dataclass(kw_only=True, eq=False)
class _Started:
    """A call started on its worker: running, or paused at a scheduling point, until it ends."""

    call: _Call
    request: ArmedRequest
    worker: _Worker
    step: dict[str, Any]  # the step that started or last resumed it: where its error goes
    moved: asyncio.Future[None]  # that step's end: the call paused or ended
    point: str = ""  # where it is paused, while it is
    ended: bool = False


# The armed request a task serves, set by arrive(); worker calls see it through their copied context.
_current: contextvars.ContextVar[ArmedRequest | None] = contextvars.ContextVar("harness_explore_request", default=None)
# The schedule a worker thread belongs to, for time.sleep to tell its calls from everyone else's;
# and the call it runs, for point() to pause.
_worker_of = threading.local()


def point(name: str) -> None:
    """A scheduling point ``name`` reached (SQLAlchemy's hooks call this): a call of an armed schedule pauses here,
    on its worker, until the dispatcher resumes it; any other thread goes straight on."""
    started: _Started | None = getattr(_worker_of, "started", None)
    if started is None or not started.request.schedule.armed:
        return
    schedule = started.request.schedule
    schedule.loop.call_soon_threadsafe(schedule.paused_at, started, name)
    started.worker.wake.get()


class _Schedule:
    """One armed schedule: its requests, workers, chooser, and what it recorded."""

    def __init__(self, ids: list[str], chooser: choosers.Chooser, loop: asyncio.AbstractEventLoop) -> None:
        self.armed = True
        self.chooser = chooser
        self.loop = loop
        self.by_id = {request_id: ArmedRequest(schedule=self, index=index) for index, request_id in enumerate(ids)}
        self.requests = list(self.by_id.values())
        self.workers: list[_Worker] = []
        self.idle: list[_Worker] = []  # the most recently idle last
        self.paused: list[_Started] = []  # in the order they paused
        self.decisions: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.stalls = 0
        self.blocked = 0
        self.virtual_seconds = 0.0
        self._clock = threading.Lock()
        self.changed = asyncio.Event()  # a request arrived, queued a call or finished
        self.finished = asyncio.Event()
        self.failure = ""  # the explorer's own error, if its driver failed: the end says so at once
        self.driver = loop.create_task(self._drive())
        self.driver.add_done_callback(self._driver_ended)

    def _driver_ended(self, driver: asyncio.Task[None]) -> None:
        if not driver.cancelled() and driver.exception() is not None:
            error = driver.exception()
            self.failure = f"{type(error).__name__}: {tracer.bounded(str(error))}"
            self.finished.set()

    def note_change(self) -> None:
        self.changed.set()
        if all(request.finished for request in self.requests):
            self.finished.set()

    def add_virtual(self, seconds: float) -> None:
        with self._clock:
            self.virtual_seconds += seconds

    async def submit(self, request: ArmedRequest, func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        scope = tracer.current_scope.get()
        call = _Call(
            func=func,
            args=args,
            context=contextvars.copy_context(),
            name=tracer.phase_name(tracer.traced_call(func), scope.get("endpoint") if scope else None),
            done=self.loop.create_future(),
        )
        request.calls.append(call)
        self.note_change()
        try:
            return await call.done
        except asyncio.CancelledError:
            if call in request.calls:  # cancelled before it ran: it never will
                request.calls.remove(call)
                self.note_change()
            raise

    async def _drive(self) -> None:
        previous: ArmedRequest | None = None
        patience = STEP_BOUND
        while True:
            await self._quiesce(patience)
            ready = self._ready()
            if not ready:
                if self.finished.is_set():
                    return
                # Stalled, or every started call blocked: wait for a change; the end's timeout ends the schedule.
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), STEP_BOUND)
                continue
            held = previous if previous in ready else None
            if held is not None:  # index 0 is no preemption
                ready.remove(held)
                ready.insert(0, held)
            request = ready[self._decide("run", [r.index for r in ready], [f"request {r.index}" for r in ready])]
            step: dict[str, Any] = {"index": len(self.steps) + 1, "request": request.index}
            paused = next((started for started in self.paused if started.request is request), None)
            started = self._start(request, step) if paused is None else self._resume(paused, step)
            step["preempted"] = held is not None and request is not held
            self.steps.append(step)
            request.running += 1
            try:
                await asyncio.wait_for(asyncio.shield(started.moved), STEP_BOUND)
            except TimeoutError:  # blocked, most likely on what a paused call holds: decide on; it moves when it can
                self.blocked += 1
                patience = 0.0  # and nothing else ran meanwhile that could have let another blocked call go on
            else:
                patience = STEP_BOUND
            self.chooser.stepped(request.index, step["index"])
            previous = request

    def _ready(self) -> list[ArmedRequest]:
        """The requests that can take a step, by index: to resume a paused call, or to start one on a worker."""
        can_start = bool(self.idle) or len(self.workers) < MAX_WORKERS
        paused = {started.request for started in self.paused}
        return [request for request in self.requests if request in paused or (request.calls and can_start)]

    def _resume(self, paused: _Started, step: dict[str, Any]) -> _Started:
        """The paused call goes on from its point, on its own worker."""
        self.paused.remove(paused)
        step.update(call=paused.call.name, worker=paused.worker.number, point=paused.point, error=None)
        paused.step, paused.moved, paused.point = step, self.loop.create_future(), ""
        paused.worker.wake.put(None)
        return paused

    def _start(self, request: ArmedRequest, step: dict[str, Any]) -> _Started:
        """The request's next call, started on the worker a decision picks."""
        workers = self.idle[::-1]  # anyio hands a call to the most recently idle worker
        grow = len(self.workers) < MAX_WORKERS
        chosen = self._decide(
            "worker",
            [worker.number for worker in workers] + [len(self.workers) + 1] * grow,
            [f"worker {worker.number}" for worker in workers] + ["new worker"] * grow,
        )
        worker = workers[chosen] if chosen < len(workers) else self._new_worker()
        if worker in self.idle:
            self.idle.remove(worker)
        call = request.calls.popleft()
        step.update(call=call.name, worker=worker.number, point="call", error=None)
        started = _Started(call=call, request=request, worker=worker, step=step, moved=self.loop.create_future())

        def job() -> None:
            _worker_of.started = started
            try:
                result = call.context.run(call.func, *call.args)
            except BaseException as error:  # the app's, handed to its request as anyio would
                self.loop.call_soon_threadsafe(self._ended, started, None, error)
            else:
                self.loop.call_soon_threadsafe(self._ended, started, result, None)
            finally:
                _worker_of.started = None

        worker.jobs.put(job)
        return started

    def paused_at(self, started: _Started, name: str) -> None:
        """On the loop: ``started`` reached the scheduling point ``name`` and waits to be resumed."""
        if not self.armed:  # the schedule is ending: nothing will resume it but this
            started.worker.wake.put(None)
            return
        started.point = name
        started.request.running -= 1
        self.paused.append(started)
        if not started.moved.done():
            started.moved.set_result(None)
        self.note_change()

    def _ended(self, started: _Started, result: Any, error: BaseException | None) -> None:
        """On the loop: ``started`` ended; its request gets its outcome, its step the error's line."""
        started.ended = True
        started.request.running -= 1
        self.idle.append(started.worker)
        if error is not None:
            started.step["error"] = tracer.without_addresses(f"{type(error).__name__}: {tracer.bounded(str(error))}")
            if started.request.failed_step is None:
                started.request.failed_step = started.step["index"]
        if isinstance(error, StopIteration):  # a future cannot hold one: anyio too hands over a RuntimeError
            error = RuntimeError("the call raised StopIteration")
        call = started.call
        if not call.done.done():  # its request may have been cancelled meanwhile
            if error is None:
                call.done.set_result(result)
            else:
                call.done.set_exception(error)
        if not started.moved.done():
            started.moved.set_result(None)
        self.note_change()

    async def _quiesce(self, patience: float) -> None:
        """Let the event loop run until every request waits in the dispatcher or has finished, or a stall is counted.

        A request whose call still runs on its worker (blocked) gets ``patience`` seconds to pause or end:
        the step just taken may have let it go on.
        """
        now = self.loop.time()
        deadline, moving = now + QUIESCENCE_BOUND, now + patience
        paused = {started.request for started in self.paused}
        while unsettled := [r for r in self.requests if not (r.finished or r.calls or r in paused)]:
            if all(r.running for r in unsettled) and self.loop.time() >= moving:
                return
            self.changed.clear()
            limit = min(deadline, moving) if all(r.running for r in unsettled) else deadline
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.0, limit - self.loop.time()))
            except TimeoutError:
                if self.loop.time() >= deadline:  # an await outside the dispatcher's sight: go on, and say so
                    self.stalls += 1
                    return
            paused = {started.request for started in self.paused}

    def _decide(self, kind: choosers.Kind, options: list[int], labels: list[str]) -> int:
        if len(options) < 2:
            return 0
        chosen = self.chooser.choose(kind, options)
        self.decisions.append({"kind": kind, "chosen": chosen, "options": len(options), "labels": labels})
        return chosen

    def _new_worker(self) -> _Worker:
        jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        number = len(self.workers) + 1
        thread = threading.Thread(
            target=_serve, args=(self, jobs), name=f"harness-explore-worker-{number}", daemon=True
        )
        worker = _Worker(number=number, thread=thread, jobs=jobs)
        self.workers.append(worker)
        thread.start()
        return worker

    async def close(self) -> None:
        """Disarm: stop deciding, fail the calls still waiting, resume the paused ones, end every worker thread."""
        self.armed = False
        self.driver.cancel()
        for request in self.requests:
            while request.calls:
                call = request.calls.popleft()
                if not call.done.done():
                    call.done.set_exception(ScheduleEnded("harness: the explored schedule ended before this call ran"))
        deadline = time.monotonic() + JOIN_BOUND
        for paused in self.paused:  # one after the other, in the order they paused, each to its end (or the bound)
            paused.worker.wake.put(None)
            while not paused.ended and time.monotonic() < deadline:
                await _real_async_sleep(_JOIN_POLL)  # the loop keeps serving: the call's end is settled on it
        self.paused.clear()
        for worker in self.workers:
            worker.jobs.put(None)
        for worker in self.workers:
            while worker.thread.is_alive() and time.monotonic() < deadline:
                await _real_async_sleep(_JOIN_POLL)  # the loop keeps serving: a worker may need it to settle
            worker.thread.join(0)

    def record(self) -> dict[str, Any]:
        return {
            "choices": self.decisions,
            "steps": self.steps,
            "requests": [
                {"index": request.index, "status": request.status, "failed_step": request.failed_step}
                for request in self.requests
            ],
            "workers": len(self.workers),
            "virtual_seconds": self.virtual_seconds,
            "divergences": self.chooser.divergences,
            "stalls": self.stalls,
            "blocked": self.blocked,
            "complete": self.finished.is_set(),
        }


def _serve(schedule: _Schedule, jobs: queue.SimpleQueue[Callable[[], None] | None]) -> None:
    """A worker thread: run jobs until told to end."""
    _worker_of.schedule = schedule
    while (job := jobs.get()) is not None:
        job()


class Explorer:
    """The dispatcher of one server process and the schedule it has armed, if any."""

    def __init__(self) -> None:
        self._schedule: _Schedule | None = None
        self._run_sync_in_pool: Callable[..., Any] | None = None

    def install(self) -> None:
        """Put the dispatcher and the virtual sleeps in place: before the app is imported, and before the tracer
        wraps ``run_sync`` in its turn, so a call the explorer runs is still timed as a phase."""
        import starlette
        import starlette.concurrency

        if not hasattr(starlette.concurrency, "anyio"):  # Starlette 0.14 hands sync code to the loop's executor
            raise CannotExplore(
                f"explore mode needs Starlette 0.15 or later, whose thread pool is anyio's; "
                f"this app runs Starlette {starlette.__version__}"
            )
        import anyio.to_thread

        self._run_sync_in_pool = anyio.to_thread.run_sync
        anyio.to_thread.run_sync = self.run_sync  # type: ignore[assignment]
        time.sleep = self.sleep  # type: ignore[assignment]
        asyncio.sleep = self.async_sleep

    async def run_sync(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``anyio.to_thread.run_sync``: an armed request's call waits for its step; every other passes through."""
        request = _current.get()
        if request is None or not request.schedule.armed:
            assert self._run_sync_in_pool is not None  # installed: nothing else calls this
            return await self._run_sync_in_pool(func, *args, **kwargs)
        return await request.schedule.submit(request, func, args)

    def sleep(self, seconds: float) -> None:
        schedule: _Schedule | None = getattr(_worker_of, "schedule", None)
        if schedule is not None and schedule.armed and _virtual(seconds):
            schedule.add_virtual(seconds)
            return
        _real_sleep(seconds)

    async def async_sleep(self, delay: float, result: Any = None) -> Any:
        request = _current.get()
        if request is not None and request.schedule.armed and _virtual(delay):
            request.schedule.add_virtual(delay)
            delay = 0  # still a point where other tasks run, as a real sleep is
        return await _real_async_sleep(delay, result)

    def arrive(self, request_id: str) -> ArmedRequest | None:
        """The probe saw request ``request_id`` arrive: the armed request it is, if it is one not seen yet."""
        schedule = self._schedule
        request = schedule.by_id.get(request_id) if schedule is not None else None
        if request is None or request.arrived:
            return None  # not armed, or a second request with the same id: it passes through
        request.arrived = True
        _current.set(request)
        return request

    def begin(self, body: bytes) -> Answer:
        if self._schedule is not None:
            return 409, {"error": "a schedule is already armed; end it first"}
        try:
            ids, chooser = _begin_request(body)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        self._schedule = _Schedule(ids, chooser, asyncio.get_running_loop())
        return 200, {"armed": True}

    async def end(self, body: bytes) -> Answer:
        schedule = self._schedule
        if schedule is None:
            return 409, {"error": "no schedule is armed"}
        try:
            timeout = _end_timeout(body)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        with contextlib.suppress(TimeoutError):  # then the record says it is not complete
            await asyncio.wait_for(schedule.finished.wait(), timeout)
        await schedule.close()
        self._schedule = None  # only now: a begin meanwhile is refused, not armed beside ending workers
        if schedule.failure:
            return 500, {"error": f"the explorer failed: {schedule.failure}"}
        return 200, schedule.record()


def _virtual(seconds: object) -> bool:
    """A sleep the virtual clock can take; any other (negative, not finite, not a number) fails as a real one."""
    return isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 <= seconds < math.inf


def _begin_request(body: bytes) -> tuple[list[str], choosers.Chooser]:
    spec = _json_object(body, "begin")
    extra = sorted(spec.keys() - {"requests", "chooser"})
    if extra:
        raise ValueError(f"begin: unknown key {extra[0][:40]!r}")
    ids = spec.get("requests")
    if not isinstance(ids, list) or not ids or not all(isinstance(one, str) and one for one in ids):
        raise ValueError("begin: requests must be a non-empty list of request ids (strings)")
    if len(ids) > MAX_REQUESTS:
        raise ValueError(f"begin: at most {MAX_REQUESTS:,} requests, got {len(ids):,}")
    if len(set(ids)) != len(ids):
        raise ValueError("begin: the request ids must be distinct")
    if "chooser" not in spec:
        raise ValueError("begin: missing chooser")
    return ids, choosers.from_json(spec["chooser"], requests=len(ids))


def _end_timeout(body: bytes) -> float:
    spec = _json_object(body, "end")
    timeout = spec.get("timeout")
    if (
        set(spec) != {"timeout"}
        or not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not 0 <= timeout <= MAX_END_TIMEOUT
    ):
        raise ValueError(f'end: expected {{"timeout": seconds}}, from 0 to {MAX_END_TIMEOUT:g}')
    return float(timeout)


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested deeper than the parser goes
        raise ValueError(f"{what}: the body is not JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected a JSON object")
    return value
