"""Explore mode, top to bottom: the harness owns each server's thread pool and searches its schedules.

For each build: start its server with the explorer on (:mod:`harness.server.explorer`),
seed it as a trial would, then run schedules of the scenario's requests, each armed in the
server with a chooser (PCT's seeded priorities, or the choices the bounded search picks,
:mod:`harness.search`): the server decides which request's thread-pool call runs next and
on which worker thread, and answers with the schedule's record. A build's first failing
schedule is shrunk to the fewest requests and deviations that still fail, saved in the
run's folder (``schedules/BUILD.json``, what ``harness replay`` takes) and replayed once in
a fresh server: that replay, traced, is the build's trial in the record, so the report
shows its requests, exceptions and diagnosed cause. The verdicts come from
:func:`harness.verdict.decide_explore`.

Schedules of one build share its server: between schedules the explorer ends every worker
thread it made, so no ``threading.local`` survives from one schedule to the next.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import httpx

from harness.environment import describe_environment
from harness.errors import TrialError
from harness.flow import Flow
from harness.interrupts import held, the_reason
from harness.launcher import Server, stop_all
from harness.plan import RunPlan
from harness.results import TRIALS_FILE, ExploreResult, RunResult, TrialLog, TrialResult, write_summary
from harness.runner import Recorder, make_client, schedule_requests, seed_scenario, send, trial_result
from harness.scenario import HttpRequest, Scenario
from harness.search import (
    Exploration,
    Schedule,
    ScheduleFile,
    ScheduleRecord,
    counted,
    explore_bounded,
    explore_pct,
    pct_bound,
    replay_chooser,
    schedules_for_confidence,
    shrink,
    write_schedule,
)
from harness.server.explorer import BEGIN_PATH, END_PATH
from harness.variant import Variant
from harness.verdict import judged_plan

_T = TypeVar("_T")

SCHEDULES_FOLDER = "schedules"
MAX_CONFIDENT_SCHEDULES = 20_000  # a --confidence search that would need more is undecided
_END_TIMEOUT = 30.0  # seconds a schedule's requests get to finish (their sleeps are virtual: far less is usual)


def execute_explore(plan: RunPlan) -> RunResult:
    """Search every build's schedules and return (and write) the judged result."""
    started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    started = time.monotonic()
    environment = describe_environment()
    searched: list[ExploreResult] = []
    trials: list[TrialResult] = []

    def snapshot(*, complete: bool) -> RunResult:
        return judged_plan(plan, trials, environment, started_at, started, complete=complete, explore=searched)

    write_summary(snapshot(complete=False), plan.results_path)  # a run killed outright still leaves its record
    trial_log = TrialLog(plan.results_path.with_name(TRIALS_FILE))
    servers: dict[str, Server] = {}
    order = {variant.name: position for position, variant in enumerate(plan.variants)}

    def keep(result: ExploreResult, trial: TrialResult | None) -> None:
        searched.append(result)
        searched.sort(key=lambda each: order[each.variant])
        if trial is not None:
            trial_log.append(trial)
            trials.append(trial)
        with held():
            write_summary(snapshot(complete=False), plan.results_path)

    async def explore_all() -> None:
        # Side by side: a schedule waits on its requests' round trips as much as it computes.
        async with anyio.create_task_group() as group:
            for variant in plan.variants:
                group.start_soon(_explore_build, plan, variant, servers[variant.name], keep)

    complete = False
    try:
        for variant in plan.variants:
            servers[variant.name] = launch(plan, variant, "explore")
        try:
            anyio.run(explore_all)
        except BaseException as exc:  # out of the task group: a Ctrl-C, a build that cannot be served
            stop = the_reason(exc)
            if stop is exc:
                raise
            raise stop from None
        complete = True
    finally:
        with held():
            stop_all(servers.values())
            trial_log.close()
            judged = snapshot(complete=complete)
            write_summary(judged, plan.results_path)
    return judged


def launch(plan: RunPlan, variant: Variant, name: str) -> Server:
    """A server of the build with the explorer on, in a folder of the run's named ``name``."""
    return Server(
        variant,
        plan.run_dir / "servers" / f"{variant.name}-{name}",
        time_scale=plan.scenario.time_scale,
        host=plan.host,
        trace=plan.trace,
        explore=True,
    )


Keep = Callable[[ExploreResult, "TrialResult | None"], None]


async def _explore_build(plan: RunPlan, variant: Variant, server: Server, keep: Keep) -> None:
    """One build's search, the shrink of what failed, and its replay in a fresh server, given to ``keep``.

    A search a stop cuts short is kept as far as it got: its schedules, and the first that failed.
    """
    assert plan.explore is not None
    explore = plan.explore
    requests = explore.request_count(plan.scenario.schedule)
    started = time.monotonic()
    searched = ExploreResult(
        variant=variant.name,
        app=variant.app,
        strategy=explore.strategy,
        depth=explore.depth,
        bound=explore.bound,
        requests=requests,
        schedules=0,
        most_steps=0,
        exhausted=False,
        seconds=0.0,
    )
    session = Session(plan.scenario, server, start_timeout=plan.start_timeout)
    try:
        async with session:
            exploration = await session.in_thread(_search, session.blocking_run, plan, requests)
            found = exploration.found
            shrunk = await session.in_thread(shrink, session.blocking_run, found) if found else None
            most_steps = session.most_steps
    except TrialError as exc:  # a build that cannot be served (AppError) stops the run, as it does a trial's
        keep(_seconds(replace(searched, error=exc.message), started), None)
        return
    except BaseException:
        if session.ran:  # a stop cut the search short: nothing it measured is lost
            keep(_seconds(_cut_short(searched, session), started), None)
        raise
    finally:
        server.stop()
    searched = replace(
        searched,
        schedules=exploration.runs,
        most_steps=most_steps,
        exhausted=exploration.exhausted,
        searched=exploration.verdict,
        guarantee=exploration.guarantee,
        incomplete=exploration.incomplete,
    )
    if found is None or shrunk is None or found.record.failure is None:
        keep(_seconds(searched, started), None)
        return
    replay = await replay_in_fresh_server(plan, variant, shrunk.schedule, trial=exploration.runs)
    path = plan.run_dir / SCHEDULES_FOLDER / f"{variant.name}.json"
    path.parent.mkdir(exist_ok=True)
    write_schedule(
        path,
        ScheduleFile.of(
            shrunk,
            scenario=plan.scenario.name,
            scenario_digest=plan.scenario.digest(),
            variant=variant.name,
            app=variant.app,
        ),
    )
    expected = shrunk.record.failure
    seen = replay.record.failure if replay.record else None
    searched = replace(
        searched,
        failed_schedule=exploration.runs,
        seed=found.schedule.chooser.get("seed"),
        failure=found.record.failure.signature,
        choices=tuple(found.schedule.choices),
        shrunk_requests=tuple(shrunk.schedule.requests),
        shrunk_choices=tuple(shrunk.schedule.choices),
        steps=shrunk.record.steps,
        replayed=seen == expected,
        schedule_file=str(path.relative_to(plan.run_dir)),
    )
    keep(_seconds(searched, started), replay.trial)


def _cut_short(searched: ExploreResult, session: Session) -> ExploreResult:
    """What a search that was stopped had found: how many schedules ran, and the first that failed."""
    said = f"stopped after {counted(session.ran, 'schedule')}"
    cut = replace(searched, schedules=session.ran, most_steps=session.most_steps)
    if session.first_failure is None:
        return replace(cut, searched=f"{said}, none of which failed")
    number, record = session.first_failure
    assert record.failure is not None
    return replace(
        cut,
        searched=f"{said}; schedule {number} failed",
        failed_schedule=number,
        failure=record.failure.signature,
        choices=record.chosen,
    )


def _search(
    run: Callable[[Sequence[int], dict[str, Any]], ScheduleRecord], plan: RunPlan, requests: int
) -> Exploration:
    """The plan's search, in a worker thread: each schedule calls back into the event loop."""
    assert plan.explore is not None
    explore = plan.explore
    numbers = range(requests)
    if explore.strategy == "bounded":
        limit = MAX_CONFIDENT_SCHEDULES if plan.confidence is not None else explore.schedules
        return explore_bounded(run, requests=numbers, bound=explore.bound, limit=limit)
    steps = max(len(run(numbers, {"kind": "default"}).steps), 1)  # PCT's k: the schedule anyio itself makes
    schedules = explore.schedules
    if plan.confidence is not None:  # as many as PCT's bound needs at that k (more steps later: undecided)
        needed = schedules_for_confidence(pct_bound(requests, steps, explore.depth), plan.confidence)
        schedules = min(needed, MAX_CONFIDENT_SCHEDULES)
    seeds = range(1, schedules + 1)
    return explore_pct(
        run, requests=numbers, depth=explore.depth, seeds=seeds, steps_hint=steps, confidence=plan.confidence
    )


class Session:
    """A seeded server of one build, and the schedules run on it."""

    def __init__(self, scenario: Scenario, server: Server, *, start_timeout: float) -> None:
        self.scenario = scenario
        self.server = server
        self.start_timeout = start_timeout
        self.ran = 0
        self.most_steps = 0
        self.first_failure: tuple[int, ScheduleRecord] | None = None  # the first schedule that failed, by number
        self._stopping = threading.Event()
        self._client: httpx.AsyncClient | None = None
        self._flow: Flow | None = None  # what the seeding saved, and the cookies: every schedule on this server uses it
        self.last: Recorder | None = None

    async def __aenter__(self) -> Session:
        await self.server.wait_ready(self.start_timeout)
        self._client = make_client(self.server.base_url, self.scenario)
        seeding = Recorder(variant=self.server.variant.name, trial=0)
        self._flow = await seed_scenario(self._client, self.scenario, seeding)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._client is not None
        await self._client.aclose()

    def blocking_run(self, requests: Sequence[int], chooser: dict[str, Any]) -> ScheduleRecord:
        """:meth:`run` from the search's worker thread; once the run is being stopped, the search ends here."""
        if self._stopping.is_set():
            raise _Stopped
        return anyio.from_thread.run(self.run, requests, chooser)

    async def in_thread(self, search: Callable[..., _T], *args: Any) -> _T:
        """``search(*args)`` in a worker thread, each of its schedules run back on the event loop.

        A stop (Ctrl-C, SIGTERM) cancels this task, not the thread: the thread is told, ends at
        its next schedule, and is waited for, so none is left behind for Python to wait on at exit.
        """
        self._stopping.clear()  # set by the last search's own end
        async with anyio.create_task_group() as watch:
            watch.start_soon(_set_when_cancelled, self._stopping)
            try:
                found = await anyio.to_thread.run_sync(search, *args)
            except _Stopped:
                await anyio.lowlevel.checkpoint()  # the cancellation that stopped it goes on from here
                raise
            finally:
                watch.cancel_scope.cancel()
        return found

    async def run(self, requests: Sequence[int], chooser: dict[str, Any]) -> ScheduleRecord:
        """One schedule of the scenario's requests numbered ``requests``: armed, sent at once, its record read."""
        assert self._client is not None and self._flow is not None
        self.ran += 1
        recorder = Recorder(variant=self.server.variant.name, trial=self.ran)
        ids = [recorder.request_id("schedule", index) for index in requests]
        rendered = schedule_requests(self._flow, self.scenario, requests, trial=self.ran)
        await self._control(BEGIN_PATH, {"requests": ids, "chooser": chooser})
        recorder.start_schedule()
        async with anyio.create_task_group() as tg:
            for index in requests:
                tg.start_soon(self._send, recorder, rendered[index], index)
        answer = await self._control(END_PATH, {"timeout": _END_TIMEOUT})
        self.last = recorder
        try:
            record = ScheduleRecord.from_dict(answer)
        except ValueError as exc:
            raise TrialError(
                f"the explorer in the server of {self.server.variant.name!r} sent a bad record: {exc}"
            ) from None
        self.most_steps = max(self.most_steps, len(record.steps))
        if record.failure is not None and self.first_failure is None:
            self.first_failure = (self.ran, record)
        return record

    async def _send(self, recorder: Recorder, request: HttpRequest, index: int) -> None:
        assert self._client is not None and self._flow is not None
        await send(self._client, recorder, request, phase="schedule", index=index, jar=self._flow.jar(index))

    async def _control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._client is not None
        try:
            answer = await self._client.post(path, json=body, timeout=_END_TIMEOUT + 10)
        except httpx.HTTPError as exc:
            raise TrialError(
                f"the explorer in the server of {self.server.variant.name!r} did not answer: {exc}"
            ) from None
        if answer.status_code != 200:
            raise TrialError(
                f"the explorer in the server of {self.server.variant.name!r} refused {path}: {answer.text[:200]}"
            )
        try:
            record: dict[str, Any] = answer.json()
        except ValueError:
            raise TrialError(
                f"the explorer in the server of {self.server.variant.name!r} answered {path} with no JSON"
            ) from None
        return record


class _Stopped(Exception):
    """The run is being stopped: the search in its thread ends at its next schedule."""


async def _set_when_cancelled(event: threading.Event) -> None:
    try:
        await anyio.sleep_forever()
    finally:
        event.set()


@dataclass(frozen=True, kw_only=True)
class Replay:
    """A schedule replayed in a fresh server: its record (None: it could not be run), and the trial that keeps it."""

    record: ScheduleRecord | None
    trial: TrialResult


async def replay_in_fresh_server(plan: RunPlan, variant: Variant, schedule: Schedule, *, trial: int) -> Replay:
    """``schedule`` in a new server of the build, seeded: its outcome, and its requests as a traced trial."""
    server = launch(plan, variant, f"replay{trial}")
    started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    record, error = None, None
    session = Session(plan.scenario, server, start_timeout=plan.start_timeout)
    try:
        async with session:
            session.ran = trial - 1  # its requests are numbered as the schedule that failed
            record = await session.run(schedule.requests, replay_chooser(schedule.choices))
    except TrialError as exc:
        error = exc.message
    finally:
        server.stop()
    recorder = session.last or Recorder(variant=variant.name, trial=trial)  # none: it never got to its schedule
    return Replay(record=record, trial=trial_result(server, trial, recorder, started_at, error))


def _seconds(result: ExploreResult, started: float) -> ExploreResult:
    return replace(result, seconds=round(time.monotonic() - started, 3))
