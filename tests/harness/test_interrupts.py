"""Ctrl-C and SIGTERM, sent for real, to the harness in-process and as a user's shell runs it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from harness.errors import ExitCode, HarnessError
from harness.interrupts import first_stop_only, held, raise_if_stopped, seen_through, sigterm_as_ctrl_c, was_stopped
from harness.journal import read_journal
from harness.results import JOURNAL_FILE, RunResult, read_results, write_results
from tests.conftest import is_running
from tests.harness import factories, runs

STOPS = [
    pytest.param(signal.SIGINT, ExitCode.INTERRUPTED, id="SIGINT"),
    pytest.param(signal.SIGTERM, ExitCode.TERMINATED, id="SIGTERM"),
]


@pytest.fixture(autouse=True)
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in this process, even when pytest runs as a background job."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_signal_that_arrives_inside_held_is_acted_on_after_the_block() -> None:
    finished = []
    with pytest.raises(KeyboardInterrupt), held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # without held, KeyboardInterrupt would be raised in here
        finished.append("the whole block")
    assert finished == ["the whole block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_while_the_results_are_written_waits_for_the_whole_file(tmp_path: Path) -> None:
    trials = tuple(factories.trial("unpatched", n, ["ok", "server-error"] * 500) for n in range(1, 5))
    result = replace(factories.make_result(), trials=trials)
    path = tmp_path / "results.json"
    fired: list[float] = []

    def ctrl_c() -> None:
        fired.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt), held():
        started = time.monotonic()
        threading.Timer(0.01, ctrl_c).start()
        write_results(result, path)
        finished = time.monotonic()
    assert started < fired[0] < finished, "the signal did not arrive during the write"
    assert read_results(path) == result
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), HarnessError("a write failed")], ids=["Ctrl-C", "error"])
def test_what_a_stopped_run_owes_is_done_whole_and_a_ctrl_c_meanwhile_is_acted_on_after(stop: BaseException) -> None:
    done = []

    def run() -> None:
        raise stop

    def on_stop(exc: BaseException) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # without the hold, KeyboardInterrupt would be raised in here
        done.append(exc)

    with pytest.raises(KeyboardInterrupt):
        seen_through(run, on_stop=on_stop, stops=(KeyboardInterrupt, HarnessError))
    assert done == [stop]
    assert seen_through(lambda: 7, on_stop=on_stop) == 7 and done == [stop]


def test_sigterm_is_a_ctrl_c_that_exits_143() -> None:
    with sigterm_as_ctrl_c() as signals:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert signals.exit_code is ExitCode.TERMINATED
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize(("stop", "code"), STOPS)
def test_a_stop_signal_python_swallowed_is_raised_where_the_run_checks(
    monkeypatch: pytest.MonkeyPatch, stop: signal.Signals, code: ExitCode
) -> None:
    unraisable: list[type[BaseException]] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda args: unraisable.append(args.exc_type))
    with sigterm_as_ctrl_c() as signals:
        assert not _stops_here()  # nothing arrived yet
        _an_object_dies_as_the_signal_arrives(stop)  # returns: Python swallowed the KeyboardInterrupt
        _an_object_dies_as_the_signal_arrives(None)
        assert unraisable == [ValueError], "only what is no stop is reported as Python reports it"
        assert _stops_here()
        assert signals.exit_code is code
    with sigterm_as_ctrl_c():
        assert not _stops_here()  # a new run starts with no record
    assert not _stops_here()  # without the record (the pytest plugin), nothing to check


def test_a_ctrl_c_the_process_ignores_is_no_stop_even_while_held() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a shell's background job
    with sigterm_as_ctrl_c() as signals:
        with held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
        assert not _stops_here() and not signals.arrived


def test_a_second_ctrl_c_waits_for_the_trials_the_first_one_cancelled() -> None:
    """The first Ctrl-C cancels, as asyncio's runner does; the second neither cuts the cleanup short nor is lost."""
    cleaned_up = []

    async def trial() -> None:
        with first_stop_only():
            try:
                signal.raise_signal(signal.SIGINT)
                await anyio.sleep(10)
            finally:
                with anyio.CancelScope(shield=True):
                    signal.raise_signal(signal.SIGINT)  # without first_stop_only: KeyboardInterrupt here
                    await anyio.sleep(0.1)
                    cleaned_up.append("stopped its servers")

    with sigterm_as_ctrl_c() as signals:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            anyio.run(trial)
        assert time.monotonic() - started < 5, "the first Ctrl-C did not cancel the trial"
        assert cleaned_up == ["stopped its servers"] and signals.arrived
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_in_a_background_job_sigterm_cancels_the_trials_instead_of_raising_where_the_loop_is() -> None:
    """Ctrl-C ignored, as a shell's background job has it: the runner takes no Ctrl-C, and SIGTERM still stops."""
    ran_on = []

    async def trial() -> None:
        with first_stop_only():
            signal.raise_signal(signal.SIGINT)  # ignored
            signal.raise_signal(signal.SIGTERM)  # before: KeyboardInterrupt here, in the middle of a trial's code
            ran_on.append("the rest of its synchronous code")
            signal.raise_signal(signal.SIGTERM)  # a second adds nothing
            await anyio.sleep(10)

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with sigterm_as_ctrl_c() as signals:
            started = time.monotonic()
            with pytest.raises(BaseException) as stopped:
                anyio.run(trial)
            assert time.monotonic() - started < 5, "the SIGTERM did not cancel the trial"
            assert ran_on == ["the rest of its synchronous code"]
            assert isinstance(stopped.value, asyncio.CancelledError) and was_stopped()
            assert signals.exit_code == ExitCode.TERMINATED
    finally:
        signal.signal(signal.SIGINT, previous)


def _stops_here() -> bool:
    """Whether the run would stop at this point (asked so, a KeyboardInterrupt would end the test session)."""
    try:
        raise_if_stopped()
    except KeyboardInterrupt:
        return True
    return False


def _an_object_dies_as_the_signal_arrives(stop: signal.Signals | None) -> None:
    """Drop an object while ``stop`` arrives in its weakref callback: Python's handler raises there.

    Without a signal, the callback fails another way.
    """

    def callback(ref: object) -> None:
        if stop is None:
            raise ValueError("a callback's own failure")
        signal.raise_signal(stop)

    class Dropped:
        pass

    dropped = Dropped()
    watcher = weakref.ref(dropped, callback)
    del dropped
    assert watcher() is None


@pytest.mark.e2e
@pytest.mark.parametrize(("stop", "code"), STOPS)
def test_a_signal_during_the_schedule_stops_servers_within_5_s_and_keeps_the_requests(
    tmp_path: Path, stop: signal.Signals, code: ExitCode
) -> None:
    with runs.running(tmp_path, *runs.REAL_PACE, *runs.TWO_BUILDS) as process:
        pids = [runs.server_pid(directory) for directory in runs.serving(tmp_path)]
        time.sleep(1.5)  # into the schedule: requests are in flight
        process.send_signal(stop)
        assert runs.wait_gone(pids, 5) < 5
        _, err = process.communicate(timeout=15)
    assert process.returncode == code
    assert "Traceback" not in err and f"harness: {code.meaning}" in err
    result = _the_incomplete_run(tmp_path)
    assert result.trials and all(t.error == "interrupted" for t in result.trials)
    for trial in result.trials:  # seeded, then tabs sent that sleep 9 s, 8 s, ...: none could finish
        assert any(r.phase == "seed" and r.outcome == "ok" for r in trial.records)
        scheduled = [r.outcome for r in trial.records if r.phase == "schedule"]
        # The unpatched build may fail a tab at once (the bug itself); no tab can have been answered 2xx.
        assert "interrupted" in scheduled and set(scheduled) <= {"interrupted", "server-error"}


@pytest.mark.e2e
def test_a_background_job_ignores_ctrl_c_as_shells_intend_but_sigterm_still_stops_it(tmp_path: Path) -> None:
    with runs.running(tmp_path, *runs.REAL_PACE, *runs.TWO_BUILDS, background=True) as process:
        pids = [runs.server_pid(directory) for directory in runs.serving(tmp_path)]
        time.sleep(1.5)
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert process.poll() is None and all(is_running(pid) for pid in pids)
        process.send_signal(signal.SIGTERM)
        assert runs.wait_gone(pids, 5) < 5
        _, err = process.communicate(timeout=15)
    assert process.returncode == ExitCode.TERMINATED, err
    assert "Traceback" not in err
    assert all(t.error == "interrupted" for t in _the_incomplete_run(tmp_path).trials)


@pytest.mark.e2e
def test_ctrl_c_with_trials_side_by_side_stops_every_server_of_every_trial(tmp_path: Path) -> None:
    with runs.running(tmp_path, *runs.REAL_PACE, *runs.TWO_BUILDS, "--jobs", "2", servers=4) as process:
        pids = [runs.server_pid(directory) for directory in runs.serving(tmp_path)]
        time.sleep(1.5)
        process.send_signal(signal.SIGINT)
        assert runs.wait_gone(pids, 5) < 5
        process.communicate(timeout=15)
    assert process.returncode == ExitCode.INTERRUPTED
    result = _the_incomplete_run(tmp_path)
    assert sorted((t.trial, t.variant) for t in result.trials) == [
        (n, v) for n in (1, 2) for v in ("patched", "unpatched")
    ]
    assert all(t.error == "interrupted" for t in result.trials)


@pytest.mark.e2e
@pytest.mark.parametrize(("stop", "code"), STOPS)
def test_a_signal_during_seeding_stops_servers_and_keeps_the_seed_requests(
    tmp_path: Path, stop: signal.Signals, code: ExitCode
) -> None:
    scenario = tmp_path / "long-seed.toml"
    scenario.write_text('[seed]\nusers = 500\nitems_per_user = 0\n[schedule]\nkind = "burst"\nrequests = 2\n')
    with runs.running(tmp_path / "out", "--scenario", str(scenario), *runs.TWO_BUILDS) as process:
        servers = runs.serving(tmp_path / "out")
        # Seeding is sequential: once a server logged its second POST, the first answer was recorded.
        runs.wait_until(
            lambda: all((d / "server.log").read_text().count("POST /users/") >= 2 for d in servers),
            30,
            "seeding never began",
        )
        process.send_signal(stop)
        assert runs.wait_gone([runs.server_pid(d) for d in servers], 5) < 5
        process.communicate(timeout=15)
    assert process.returncode == code
    result = _the_incomplete_run(tmp_path / "out")
    assert len(result.trials) == 2
    for trial in result.trials:
        assert trial.error == "interrupted"
        assert any(r.outcome == "ok" for r in trial.records)
        assert {r.phase for r in trial.records} == {"seed"}, "seeding was over before the signal came"


@pytest.mark.e2e
def test_ctrl_c_pressed_again_and_again_during_teardown_leaves_a_whole_file_and_no_server(tmp_path: Path) -> None:
    with runs.running(tmp_path, *runs.REAL_PACE, *runs.TWO_BUILDS) as process:
        pids = [runs.server_pid(directory) for directory in runs.serving(tmp_path)]
        time.sleep(1.5)
        # uvicorn takes up to 2 s to let in-flight requests finish: these land during teardown.
        for _ in range(6):
            process.send_signal(signal.SIGINT)
            time.sleep(0.05)
        _, err = process.communicate(timeout=15)
    assert process.returncode == ExitCode.INTERRUPTED
    assert "Traceback" not in err
    assert runs.wait_gone(pids, 0.5) < 0.5
    result = _the_incomplete_run(tmp_path)
    assert len(result.trials) == 2 and all(t.error == "interrupted" for t in result.trials)


@pytest.mark.e2e
def test_ctrl_c_pressed_again_and_again_while_the_stopped_run_is_written_up_leaves_the_report_and_says_so(
    tmp_path: Path,
) -> None:
    out, entered, release = tmp_path / "out", tmp_path / "entered", tmp_path / "release"
    # The stop's last steps (read back what was saved, write the report, say where) take milliseconds;
    # the first is held open here until the signals are sent, so every one of them lands inside them.
    prelude = runs.paused_in("read_results", entered, release)
    process = runs.start(out, *runs.REAL_PACE, *runs.TWO_BUILDS, prelude=prelude)
    try:
        runs.wait_until(lambda: len(runs.serving(out)) >= 2, 60, "the servers never came up")
        time.sleep(1.5)  # into the schedule: there are requests to keep
        process.send_signal(signal.SIGINT)
        runs.again_and_again(process, entered, release)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err
    assert "stopped: what was measured is in" in err and err.endswith(f"harness: {ExitCode.INTERRUPTED.meaning}\n")
    _the_incomplete_run(out)  # its report and the index written


def _the_incomplete_run(out: Path) -> RunResult:
    """The run's results, checked as every interrupted run must leave them."""
    [path] = out.glob("*/results.json")
    assert not list(out.glob("*/*.partial"))
    result = read_results(path)
    assert not result.complete
    journal = {r.request_id: r for r in read_journal(path.parent / JOURNAL_FILE)}
    recorded = [dataclasses.replace(r, exceptions=()) for t in result.trials for r in t.records]
    assert recorded and [journal[r.request_id] for r in recorded] == recorded
    report = path.with_name("report.html").read_text()  # rendered from what was saved
    assert 'id="incomplete"' in report and "This run is incomplete" in report
    assert path.parent.name in (out / "index.html").read_text()
    return result
