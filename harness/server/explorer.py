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
2. a *run* decision picks the request whose next call runs: index 0 is the request that
   ran the step before, if it has a call waiting (no preemption), then the others by index;
3. a *worker* decision picks its thread: the idle workers most recently idle first (what
   anyio does), then a new one, up to ``MAX_WORKERS``;
4. the call runs to its end on that worker, in a copy of its request's context (as anyio
   runs it), and the step is recorded with its error if it raised.

A decision with one option is not recorded; one whose chosen index is not 0 is a
deviation. While armed, ``time.sleep`` in a worker and ``asyncio.sleep`` in an armed
request return at once and add their seconds to a virtual clock. ``POST
/__harness/explore/end`` waits for the requests to finish (or its timeout), answers the
schedule's record, disarms, and ends every worker thread: no ``threading.local`` outlives
its schedule. Requests are numbered by their place in the begin (from 0), steps and
workers counted from 1.

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
JOIN_BOUND = 5.0  # real seconds an ending schedule waits for a worker still inside a call
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
    calls: collections.deque[_Call] = field(default_factory=collections.deque)

    def leave(self, status: int | None) -> None:
        """The app returned or raised for this request, having sent ``status`` (None if nothing)."""
        self.finished, self.status = True, status
        self.schedule.note_change()


@dataclass(kw_only=True, eq=False)
class _Worker:
    number: int
    thread: threading.Thread
    jobs: queue.SimpleQueue[Callable[[], None] | None]


# The armed request a task serves, set by arrive(); worker calls see it through their copied context.
_current: contextvars.ContextVar[ArmedRequest | None] = contextvars.ContextVar("harness_explore_request", default=None)
# The schedule a worker thread belongs to, for time.sleep to tell its calls from everyone else's.
_worker_of = threading.local()


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
        self.decisions: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.stalls = 0
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
        while True:
            await self._quiesce()
            pending = [request for request in self.requests if request.calls]
            if not pending:
                if self.finished.is_set():
                    return
                continue  # stalled with nothing to run: wait on; the end's timeout ends the schedule
            held = previous if previous is not None and previous.calls else None
            if held is not None:  # index 0 is no preemption
                pending.remove(held)
                pending.insert(0, held)
            request = pending[self._decide("run", [r.index for r in pending], [f"request {r.index}" for r in pending])]
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
            error = await self._run(call, worker)
            self.idle.append(worker)
            number = len(self.steps) + 1
            self.steps.append(
                {
                    "index": number,
                    "request": request.index,
                    "call": call.name,
                    "worker": worker.number,
                    "preempted": held is not None and request is not held,
                    "error": error,
                }
            )
            if error is not None and request.failed_step is None:
                request.failed_step = number
            self.chooser.stepped(request.index, number)
            previous = request

    async def _quiesce(self) -> None:
        """Let the event loop run until every request waits in the dispatcher or has finished, or a stall is counted."""
        deadline = self.loop.time() + QUIESCENCE_BOUND
        while not all(request.finished or request.calls for request in self.requests):
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - self.loop.time()))
            except TimeoutError:  # an await outside the dispatcher's sight: go on, and say so
                self.stalls += 1
                return

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

    async def _run(self, call: _Call, worker: _Worker) -> str | None:
        """Run ``call`` on ``worker`` to its end; the request gets its outcome, the step the error's line."""
        ran: asyncio.Future[str | None] = self.loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if not ran.done():  # the driver is cancelled when its schedule ends
                ran.set_result(None if error is None else f"{type(error).__name__}: {tracer.bounded(str(error))}")
            if isinstance(error, StopIteration):  # a future cannot hold one: anyio too hands over a RuntimeError
                error = RuntimeError("the call raised StopIteration")
            if not call.done.done():  # its request may have been cancelled meanwhile
                if error is None:
                    call.done.set_result(result)
                else:
                    call.done.set_exception(error)

        def job() -> None:
            try:
                result = call.context.run(call.func, *call.args)
            except BaseException as error:  # the app's, handed to its request as anyio would
                self.loop.call_soon_threadsafe(settle, None, error)
            else:
                self.loop.call_soon_threadsafe(settle, result, None)

        worker.jobs.put(job)
        return await ran

    async def close(self) -> None:
        """Disarm: stop deciding, fail the calls still waiting, end every worker thread."""
        self.armed = False
        self.driver.cancel()
        for request in self.requests:
            while request.calls:
                call = request.calls.popleft()
                if not call.done.done():
                    call.done.set_exception(ScheduleEnded("harness: the explored schedule ended before this call ran"))
        for worker in self.workers:
            worker.jobs.put(None)
        deadline = time.monotonic() + JOIN_BOUND
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
