from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ExitCode
from harness.results import read_results
from tests.conftest import is_running


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--scenario", "bursty"], "unknown scenario 'bursty'"),
        (["run", "--variant", "sideways"], "unknown variant 'sideways'; known variants: unpatched, patched"),
        (["run", "--trials", "0"], "--trials: must be > 0, got 0"),
        (["run", "--trials", "many"], "--trials: expected a int, got 'many'"),
        (["run", "--time-scale", "-1"], "--time-scale: must be > 0"),
        (["run", "--scenario", "missing.toml"], "cannot read scenario file missing.toml"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run", "--jobs", "0"], "--jobs: must be > 0, got 0"),
        (["run", "--confidence", "1"], "--confidence: must be between 0 and 1, e.g. 0.99, got 1"),
        (["run", "--max-trials", "50"], "--max-trials bounds a --confidence run; give --confidence too"),
        (["run", "--max-seconds", "60"], "--max-seconds bounds a --confidence run"),
        (["run", "--confidence", "0.9", "--trials", "3"], "--trials and --confidence exclude each other"),
    ],
)
def test_bad_input_ends_in_one_line_and_the_usage_exit_code(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == ExitCode.USAGE_ERROR
    err = capsys.readouterr().err
    assert err.startswith("harness: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "harness-out").exists()


def test_an_invalid_scenario_file_names_file_and_field(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("[schedule]\nkind = 'burst'\nrequests = -3\n")
    assert main(["run", "--scenario", str(path), "--out", str(tmp_path)]) == ExitCode.USAGE_ERROR
    assert f"{path}: [schedule] requests: expected a whole number >= 1, got -3" in capsys.readouterr().err


def test_no_command_prints_help_and_usage_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == ExitCode.USAGE_ERROR
    assert "usage: harness" in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--scenario NAME|PATH" in out
    for code in ExitCode:
        assert f"  {code.value:<4} {code.meaning}" in out


def test_list_names_every_scenario_and_variant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == ExitCode.OK
    out = capsys.readouterr().out
    for name in ("tutorial-tabs", "burst", "waves", "unpatched", "patched"):
        assert f"  {name} " in out


@pytest.mark.e2e
def test_harness_run_as_a_user_types_it(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--scenario", "burst", "--trials", "2", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stderr
    assert "trial 1/2" in completed.stderr and "trial 2/2" in completed.stderr
    assert "unpatched failed as expected" in completed.stdout
    assert "peewee.OperationalError: Connection already opened." in completed.stdout
    [results] = tmp_path.glob("*-burst/results.json")
    assert f"results: {results}" in completed.stdout
    assert json.loads(results.read_text())["exit_code"] == 0


@contextlib.contextmanager
def _real_pace_run(out: Path, jobs: int = 1) -> Iterator[subprocess.Popen[str]]:
    """``harness run`` on tutorial-tabs at the tutorial's pace, once all its servers are up."""
    command = ["-m", "harness", "run", "--scenario", "tutorial-tabs", "--time-scale", "1", "--out", str(out)]
    command += ["--jobs", str(jobs)]
    process = subprocess.Popen(
        [sys.executable, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not _serving(out, 2 * jobs) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _serving(out, 2 * jobs), "the servers never came up"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.mark.e2e
@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_stops_every_server_and_keeps_what_was_measured(tmp_path: Path, jobs: int) -> None:
    with _real_pace_run(tmp_path, jobs) as process:
        time.sleep(1.5)  # into the schedule: requests are in flight
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=15)
    assert process.returncode == ExitCode.INTERRUPTED
    assert "Traceback" not in err and "interrupted" in err
    [path] = tmp_path.glob("*/results.json")
    result = read_results(path)
    assert not result.complete
    assert len(result.trials) == 2 * jobs and all(t.error == "interrupted" for t in result.trials)
    assert any(r.outcome == "interrupted" for t in result.trials for r in t.records)
    assert any(r.outcome == "ok" for t in result.trials for r in t.records)
    assert all(not is_running(t.pid) for t in result.trials if t.pid)
    assert not list(tmp_path.glob("*/results.json.partial"))


@pytest.mark.e2e
def test_servers_end_with_a_harness_killed_outright_and_the_run_is_on_record(tmp_path: Path) -> None:
    with _real_pace_run(tmp_path) as process:
        pids = [int(line.split("[")[1].split("]")[0]) for line in _started_lines(tmp_path)]
        process.kill()  # SIGKILL: the harness gets no chance to stop its servers
        process.wait()
    deadline = time.monotonic() + 5
    while any(is_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(pids) == 2 and not any(is_running(pid) for pid in pids)
    [path] = tmp_path.glob("*/results.json")
    assert not read_results(path).complete


def _started_lines(out: Path) -> list[str]:
    return [
        line
        for log in out.glob("*/servers/*/server.log")
        for line in log.read_text().splitlines()
        if "Started server process [" in line
    ]


def _serving(out: Path, servers: int = 2) -> bool:
    logs = list(out.glob("*/servers/*/server.log"))
    return len(logs) == servers and all("Uvicorn running" in log.read_text() for log in logs)


def _harness(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.e2e
def test_confidence_stops_burst_as_soon_as_both_verdicts_are_decided(tmp_path: Path) -> None:
    completed = _harness(
        "run", "--scenario", "burst", "--confidence", "0.9", "--max-trials", "40", "--jobs", "2", "--out", tmp_path
    )
    assert completed.returncode == ExitCode.OK, completed.stdout + completed.stderr
    [path] = tmp_path.glob("*-burst/results.json")
    result = read_results(path)
    trials = len(result.trials) // 2
    # Every unpatched burst trial fails on this stack; 0.9 then takes 7 clean trials, rounded
    # up to the round of 2; an unpatched trial without a 5xx would take a few more.
    assert 8 <= trials < 40
    assert (result.confidence, result.jobs) == (0.9, 2)
    unpatched, patched = result.verdicts
    assert unpatched.kind == patched.kind == "met"
    assert patched.power is not None and patched.power.trials == trials
    assert "decided at 90% confidence" in patched.reason
    assert "held to 90% confidence: every verdict decided" in completed.stdout
    assert f"trial {trials} (at most 40)" in completed.stderr


@pytest.mark.e2e
@pytest.mark.parametrize(("limit", "trials"), [(["--max-trials", "2"], 2), (["--max-seconds", "0.1"], 1)])
def test_confidence_without_a_reference_ends_undecided_at_its_limit(
    tmp_path: Path, limit: list[str], trials: int
) -> None:
    command = ["run", "--scenario", "burst", "--variant", "patched", "--confidence", "0.9", *limit]
    completed = _harness(*command, "--out", tmp_path)
    assert completed.returncode == ExitCode.UNDECIDED, completed.stdout + completed.stderr
    assert "held to 90% confidence: not decided within the limits: patched" in completed.stdout
    assert "exit code 5: undecided" in completed.stdout
    [path] = tmp_path.glob("*-burst/results.json")
    assert len(read_results(path).trials) == trials
