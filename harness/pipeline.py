"""The run, top to bottom: launch, run, record, decide; round after round of trials.

Each trial starts a fresh server per variant (the countdown and the database are
process state) and runs the variants side by side, or with ``url`` sends every trial to a
server the user runs; a round runs ``jobs`` trials side by side, and its servers are
started while the round before stops its own. A run does the
scenario's number of trials, or with ``confidence`` goes on until every verdict is
decided or a limit is reached. Every request is appended to the run's
journal as it happens (:mod:`harness.journal`); each trial is appended to
``trials.jsonl`` when it ends, its server's exceptions and trace with it (the server's
own files are then removed); the small ``results.json`` is rewritten after every round
and once more when the run ends, however it ends, so an interrupted run keeps what it
measured and says it is incomplete. Stopping servers and writing the
results hold off Ctrl-C and SIGTERM (:func:`harness.interrupts.held`, and inside the
event loop :func:`harness.interrupts.first_stop_only`), so a second signal cannot leave
servers running or a file half written; a stop signal whose KeyboardInterrupt Python
swallowed stops the run before its next round (:func:`harness.interrupts.raise_if_stopped`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import anyio

from harness.environment import describe_environment
from harness.errors import HarnessError, LaunchError, TrialError
from harness.forkserver import warm_up
from harness.interrupts import first_stop_only, held, raise_if_stopped, the_reason
from harness.journal import Journal
from harness.launcher import EVENTS_FILE, Server, stop_all
from harness.plan import RunPlan
from harness.postgres_pool import PostgresPool
from harness.results import (
    DEFAULT_LEAK_WAIT,
    TRIALS_FILE,
    ConnectionSample,
    RunResult,
    TrialLog,
    TrialResult,
    microseconds,
    write_summary,
)
from harness.runner import Recorder, make_client, run_trial, trial_result
from harness.trace import TRACE_FILE
from harness.variant import Variant
from harness.verdict import judged_plan

_DIED_WAIT = 1.0  # seconds to wait for the exit code of a server that dropped requests
_STOP_POLL = 0.02  # seconds between looks at a server asked to stop

TrialCallback = Callable[[int, Sequence[TrialResult]], None]


def execute(plan: RunPlan, on_trial: TrialCallback | None = None) -> RunResult:
    """Run every trial of the plan and return (and write) the verdict-bearing result.

    An explore-mode plan searches schedules instead of running trials (:mod:`harness.explore`).
    """
    if plan.explore is not None:
        from harness.explore import execute_explore

        return execute_explore(plan)
    started_at = _now()
    started = time.monotonic()
    if plan.url is None:
        for python in dict.fromkeys(variant.python for variant in plan.variants):
            warm_up(python)  # its imports overlap the set-up below
    environment = describe_environment()
    trials: list[TrialResult] = []
    postgres: PostgresPool | None = None  # started once the run has its record, so a failure to start is kept too

    def snapshot(*, complete: bool) -> RunResult:
        server = postgres.display_url if postgres else None
        return judged_plan(plan, trials, environment, started_at, started, complete=complete, database_server=server)

    complete = False
    so_far = snapshot(complete=False)
    write_summary(so_far, plan.results_path)  # a run killed outright still leaves its record
    trial_log = TrialLog(plan.results_path.with_name(TRIALS_FILE))
    journal = Journal(plan.journal_path)

    def keep(trial: TrialResult) -> None:
        trial_log.append(trial)
        trials.append(trial)
        _drop_server_files(trial)

    ahead: dict[tuple[int, str], Server] = {}  # the next round's servers, started as this one stops its own
    try:
        postgres = _postgres(plan)
        if postgres is not None:  # the record names the server, and its limits, from now on
            environment.update(postgres.limits)
            so_far = snapshot(complete=False)
            write_summary(so_far, plan.results_path)
        done = 0
        while _more_trials(plan, done, so_far, started):
            raise_if_stopped()
            numbers = _round_numbers(plan, done)
            outcome = _round(plan, numbers, journal, keep, ahead, postgres)
            so_far = snapshot(complete=False)  # what is written is what decides the next round
            with held():
                write_summary(so_far, plan.results_path)
                journal.clear()  # its requests are in trials.jsonl now
            if on_trial:
                for trial in numbers:
                    on_trial(trial, outcome[trial])
            done = numbers[-1]
        raise_if_stopped()
        complete = True
    finally:
        with held():
            _discard(ahead.values())
            if postgres is not None:
                postgres.close()  # drops every database made for the run; stops the server if it is the harness's
            trial_log.close()
            journal.close()
            result = snapshot(complete=complete)
            write_summary(result, plan.results_path)
    return result


def _postgres(plan: RunPlan) -> PostgresPool | None:
    """The PostgreSQL server the run's builds get their databases on, if any runs on PostgreSQL."""
    if plan.url is not None or all(plan.database_of(v) != "postgres" for v in plan.variants):
        return None
    if plan.database_url is not None:
        return PostgresPool.connect(plan.database_url)
    return PostgresPool.start(max_connections=plan.postgres_max_connections, timeout=plan.start_timeout)


def _more_trials(plan: RunPlan, done: int, so_far: RunResult, started: float) -> bool:
    """Whether to start another round: until the trial count, or until every verdict is decided."""
    if done >= plan.trial_limit:
        return False
    if plan.confidence is None or done == 0:
        return True
    in_time = time.monotonic() - started < plan.max_seconds
    return in_time and any(verdict.kind == "undecided" for verdict in so_far.verdicts)


def _round_numbers(plan: RunPlan, done: int) -> range:
    """The trials of the round after trial ``done``: up to ``jobs`` of them, within the trial limit."""
    return range(done + 1, min(done + plan.jobs, plan.trial_limit) + 1)


def _round(
    plan: RunPlan,
    numbers: range,
    journal: Journal,
    keep: Callable[[TrialResult], None],
    ahead: dict[tuple[int, str], Server],
    postgres: PostgresPool | None,
) -> dict[int, list[TrialResult]]:
    """Trials ``numbers`` of every variant, each given to ``keep``; a trial cut short is kept as far as it got.

    Servers in ``ahead`` for these trials are used, not started again; once every trial's
    requests are done, the next round's servers are started into ``ahead`` while this
    round's stop (about 0.2 s: uvicorn lets its connections finish), so the next round
    finds them listening. A run that needs no next round stops them unused (:func:`_discard`).
    """
    recorders = {
        (n, v.name): Recorder(variant=v.name, trial=n, on_change=journal.append) for n in numbers for v in plan.variants
    }
    servers: dict[tuple[int, str], Server] = {}
    finished: dict[tuple[int, str], TrialResult] = {}
    started_at = _now()
    try:
        anyio.run(_run_side_by_side, plan, numbers, recorders, servers, finished, ahead, postgres)
    except BaseException as exc:
        stop = the_reason(exc)
        with held():
            stop_all(servers.values())
            reason = (
                "interrupted"
                if isinstance(stop, KeyboardInterrupt)
                else stop.message
                if isinstance(stop, HarnessError)
                else f"harness failure: {stop!r}"
            )
            for key, recorder in recorders.items():
                if key in servers:
                    finished.setdefault(key, trial_result(servers[key], key[0], recorder, started_at, reason))
                elif plan.url is not None and recorder.records():
                    finished.setdefault(key, _external_result(plan, key[0], recorder, started_at, reason))
            for key in recorders:
                if key in finished:
                    keep(finished[key])
        if stop is exc:
            raise
        raise stop from None
    for key in recorders:
        keep(finished[key])
    return {n: [finished[n, v.name] for v in plan.variants] for n in numbers}


async def _run_side_by_side(
    plan: RunPlan,
    numbers: range,
    recorders: dict[tuple[int, str], Recorder],
    servers: dict[tuple[int, str], Server],
    finished: dict[tuple[int, str], TrialResult],
    ahead: dict[tuple[int, str], Server],
    postgres: PostgresPool | None,
) -> None:
    """Trials ``numbers`` side by side, a fresh server per variant in each; fills ``servers`` and ``finished``."""
    next_numbers = _round_numbers(plan, numbers[-1])
    draining = len(recorders)

    def drained() -> None:
        nonlocal draining
        draining -= 1
        if draining == 0 and plan.url is None:
            ahead.update({(n, v.name): _launch(plan, n, v, postgres) for n in next_numbers for v in plan.variants})

    async def one(trial: int, variant: Variant) -> None:
        if plan.url is not None:
            finished[trial, variant.name] = await _run_external(plan, trial, recorders[trial, variant.name])
            return
        server = ahead.pop((trial, variant.name), None) or _launch(plan, trial, variant, postgres)
        servers[trial, variant.name] = server
        recorder = recorders[trial, variant.name]
        finished[trial, variant.name] = await _run_one(plan, trial, server, recorder, drained, postgres)

    with first_stop_only():  # a first Ctrl-C cancels the trials, which stop their servers; a second adds nothing
        async with anyio.create_task_group() as tg:
            for trial in numbers:
                for variant in plan.variants:
                    tg.start_soon(one, trial, variant)


def _launch(plan: RunPlan, trial: int, variant: Variant, postgres: PostgresPool | None) -> Server:
    """A server for the variant's trial, on a fresh database of its own; PostgreSQL's is watched from now on."""
    directory = plan.run_dir / "servers" / f"{variant.name}-trial{trial}"
    database = None
    if postgres is not None and plan.database_of(variant) == "postgres":
        database = postgres.create_database(f"{variant.name}-trial{trial}")
        postgres.watch(database.name)
    return Server(
        variant,
        directory,
        time_scale=plan.scenario.time_scale,
        host=plan.host,
        trace=plan.trace,
        database=database,
    )


def _discard(servers: Iterable[Server]) -> None:
    """Stop servers started for a round that did not come, and remove their folders: no trial ran there."""
    servers = list(servers)
    stop_all(servers, timeout=0)  # no request to let finish: killed if not gone at once
    for server in servers:
        shutil.rmtree(server.directory, ignore_errors=True)


async def _run_one(
    plan: RunPlan,
    trial: int,
    server: Server,
    recorder: Recorder,
    drained: Callable[[], None],
    postgres: PostgresPool | None,
) -> TrialResult:
    """One trial on ``server``; ``drained`` is called when its requests are done (not if it was cancelled).

    On PostgreSQL, the connections still open ``DEFAULT_LEAK_WAIT`` after the last
    response are counted before the server stops (which closes them all).
    """
    started_at = _now()
    error = None
    server_exit_code = None
    database = server.database_name if postgres is not None else None
    leaked = None
    try:
        try:
            await server.wait_ready(plan.start_timeout)
            async with make_client(server.base_url, plan.scenario) as client:
                await run_trial(client, plan.scenario, recorder)
            server_exit_code = await _exit_code_if_died(server, recorder)
        except LaunchError as exc:
            error = f"{exc.message}\n--- last lines of its log ---\n{exc.log_tail}"
        except TrialError as exc:
            error = exc.message
            server_exit_code = await _exit_code_if_died(server, recorder)
        drained()
        if postgres is not None and database is not None and error is None and server_exit_code is None:
            await anyio.sleep(DEFAULT_LEAK_WAIT)  # the next round's servers start meanwhile
            leaked = postgres.open_connections(database)
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(server)
    result = trial_result(server, trial, recorder, started_at, error, server_exit_code)
    if postgres is not None and database is not None:
        result = _with_connections(result, postgres.unwatch(database), recorder.origin, leaked)
        postgres.drop_database(database)
    return result


def _with_connections(
    trial: TrialResult, samples: Sequence[tuple[float, int]], origin: float, leaked: int | None
) -> TrialResult:
    """The trial with what PostgreSQL saw of it: its open connections whenever their number changed, the peak."""
    changes = [
        ConnectionSample(time=microseconds(at - origin), open=count)
        for i, (at, count) in enumerate(samples)
        if i == 0 or count != samples[i - 1][1] or i == len(samples) - 1
    ]
    return replace(
        trial,
        connections=tuple(changes),
        peak_connections=max((count for _, count in samples), default=0),
        leaked_connections=leaked,
    )


async def _stop(server: Server) -> None:
    """What :meth:`Server.stop` does, waiting on the event loop: the other servers' requests go on meanwhile.

    Not in a worker thread: Python waits at exit for every such thread, and anyio tells
    its threads to end only when the event loop's main task does; a Ctrl-C that cut a
    round short while one was being started left it waiting for ever.
    """
    server.ask_to_stop()
    with anyio.move_on_after(server.stop_timeout):
        while server.process.poll() is None:
            await anyio.sleep(_STOP_POLL)
    server.stop(timeout=0)  # reaps it, killed first if it outlived the stop timeout


async def _run_external(plan: RunPlan, trial: int, recorder: Recorder) -> TrialResult:
    """A trial against the user's own server (``plan.url``): the requests, and nothing from inside the server."""
    assert plan.url is not None
    started_at = _now()
    error = None
    try:
        async with make_client(plan.url, plan.scenario) as client:
            await run_trial(client, plan.scenario, recorder)
    except TrialError as exc:
        error = exc.message
    return _external_result(plan, trial, recorder, started_at, error)


def _external_result(plan: RunPlan, trial: int, recorder: Recorder, started_at: str, error: str | None) -> TrialResult:
    return TrialResult(
        variant=recorder.variant,
        trial=trial,
        started_at=started_at,
        server_dir="",
        pid=None,
        port=None,
        records=tuple(recorder.records()),
        error=error,
    )


async def _exit_code_if_died(server: Server, recorder: Recorder) -> int | None:
    """The server's exit code if it died under the schedule (a crash, a SIGKILL), else None.

    Its sockets close before the kernel reports it dead, so requests it dropped are a
    reason to wait a little for the exit code.
    """
    if any(r.outcome == "transport-error" for r in recorder.records()):
        with anyio.move_on_after(_DIED_WAIT):
            while server.process.poll() is None:
                await anyio.sleep(0.01)
    return server.process.poll()


def _drop_server_files(trial: TrialResult) -> None:
    """Remove what the trial's server wrote for the harness (its exceptions, its trace): trials.jsonl has it now."""
    if trial.server_dir:
        for name in (EVENTS_FILE, TRACE_FILE):
            (Path(trial.server_dir) / name).unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
