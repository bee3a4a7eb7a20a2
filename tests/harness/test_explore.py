"""Explore mode as a user runs it: the built-in builds judged by searched schedules, saved, shrunk and replayed."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ExitCode
from harness.results import read_results
from harness.search import request_name
from tests.conftest import made_once
from tests.harness import runs

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def explored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One ``harness run --explore --confidence 0.99`` of burst on the three built-in builds, for every worker."""
    folder = made_once(
        tmp_path_factory, "explored", lambda into: runs.record_run(into, "--explore", "--confidence", "0.99")
    )
    out, completed = runs.recorded(folder)
    [run_dir] = [path for path in out.iterdir() if path.is_dir()]
    return run_dir, completed


def test_a_99_percent_explore_run_fails_unpatched_with_a_witness_and_clears_the_others_within_the_bound(
    explored: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    run_dir, completed = explored
    assert completed.returncode == ExitCode.OK, completed.stdout + completed.stderr
    result = read_results(run_dir / "results.json")
    searched = {e.variant: e for e in result.explore}
    verdicts = {v.variant: v for v in result.verdicts}
    assert {name: v.kind for name, v in verdicts.items()} == dict.fromkeys(
        ("unpatched", "patched", "recommended"), "met"
    )

    unpatched = searched["unpatched"]
    assert unpatched.failure == "OperationalError: Connection already opened."
    assert unpatched.replayed is True and unpatched.schedule_file == "schedules/unpatched.json"
    # Shrunk to what the bug needs: two requests, B's get_db handed the worker that holds A's connection.
    assert len(unpatched.shrunk_requests) == 2
    [failed] = [step for step in unpatched.steps if step.error]
    assert failed.call == "dependency enter (get_db)" and failed.preempted
    assert any(
        s.call == "dependency enter (get_db)" and s.worker == failed.worker for s in unpatched.steps[: failed.index]
    )
    # The replay is the build's trial: its 5xx has the trace's cause.
    [trial] = [t for t in result.trials if t.variant == "unpatched"]
    assert [r.diagnosis.kind for r in trial.records if r.diagnosis] == ["leaked-connection"]

    # burst's [explore] is the bounded search: a clean build is decided once its space is exhausted.
    for clean in ("patched", "recommended"):
        assert not searched[clean].failed and searched[clean].exhausted
        assert "with at most 2 deviations" in verdicts[clean].reason
        assert "decided at 99% confidence" in verdicts[clean].reason
    assert (
        f"step {failed.index}: request B preempts A: dependency enter (get_db), on worker {failed.worker} -> "
        "OperationalError: Connection already opened." in completed.stdout
    )
    assert f"harness replay {run_dir / 'schedules' / 'unpatched.json'}" in completed.stdout
    report = (run_dir / "report.html").read_text()
    assert 'id="explore"' in report and "OperationalError: Connection already opened." in report


def test_a_saved_schedule_fails_again_in_a_fresh_server_every_time(
    explored: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    run_dir, _ = explored
    for _ in range(3):
        replayed = runs.harness("replay", run_dir, "--out", tmp_path)
        assert replayed.returncode == ExitCode.OK, replayed.stdout + replayed.stderr
        assert "unpatched: reproduced: request B fails at step " in replayed.stdout
        assert ", dependency enter (get_db): OperationalError: Connection already opened." in replayed.stdout


def test_a_schedule_that_no_longer_fails_is_exit_2_and_says_what_differed(
    explored: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    run_dir, _ = explored
    saved = json.loads((run_dir / "schedules" / "unpatched.json").read_text())
    saved["choices"] = []  # anyio's own schedule: A runs to its end before B starts
    edited = tmp_path / "schedules" / "unpatched.json"
    edited.parent.mkdir()
    edited.write_text(json.dumps(saved))
    (tmp_path / "results.json").write_text((run_dir / "results.json").read_text())

    replayed = runs.harness("replay", edited, "--out", tmp_path)

    assert replayed.returncode == ExitCode.SILENT, replayed.stdout + replayed.stderr
    assert "not reproduced: expected request B fails at step " in replayed.stdout
    assert "this time no request failed" in replayed.stdout


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda saved: "{not json", "not a schedule file the harness can replay: not JSON"),
        (lambda saved: json.dumps({**saved, "choices": [-1]}), "choices[0]: -1 is negative"),
        (lambda saved: json.dumps({**saved, "variant": "nightly"}), "its build 'nightly' is not one"),
        (lambda saved: json.dumps({**saved, "app": "elsewhere:app"}), "served elsewhere:app"),
        (lambda saved: json.dumps({**saved, "scenario_digest": "0" * 12}), "which is now"),
    ],
    ids=["corrupt", "negative-choice", "unknown-build", "another-app", "another-scenario"],
)
def test_a_damaged_or_foreign_schedule_file_is_one_line_and_exit_4(
    explored: tuple[Path, subprocess.CompletedProcess[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    damage: object,
    message: str,
) -> None:
    run_dir, _ = explored
    saved = json.loads((run_dir / "schedules" / "unpatched.json").read_text())
    path = tmp_path / "schedules" / "unpatched.json"
    path.parent.mkdir()
    path.write_text(damage(saved))  # type: ignore[operator]
    (tmp_path / "results.json").write_text((run_dir / "results.json").read_text())
    monkeypatch.chdir(tmp_path)

    assert main(["replay", str(path), "--out", str(tmp_path)]) == ExitCode.USAGE_ERROR
    err = capsys.readouterr().err
    assert err.startswith("harness: error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--explore", "--url", "http://127.0.0.1:9/"], "--explore and --url exclude each other"),
        (["--explore-depth", "3"], "--explore-depth shapes an --explore run; give --explore too"),
        (["--explore", "--trials", "3"], "--trials and --explore exclude each other"),
        (["--explore", "--explore-depth", "0"], "argument --explore-depth: expected a whole number from 1 to 5"),
        (["--explore", "--database", "postgres"], "explore mode runs the builds on SQLite"),
    ],
)
def test_explore_options_that_cannot_work_are_one_line_and_exit_4(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", *argv]) == ExitCode.USAGE_ERROR
    err = capsys.readouterr().err
    assert err.startswith("harness: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "harness-out").exists()


def test_pct_finds_the_bug_by_seeded_priorities_and_states_its_bound_for_a_clean_build(tmp_path: Path) -> None:
    completed = runs.harness(
        "run", "--explore", "--explore-strategy", "pct", "--explore-schedules", "30", "--out", tmp_path
    )
    assert completed.returncode == ExitCode.OK, completed.stdout + completed.stderr
    [run_dir] = [path for path in tmp_path.iterdir() if path.is_dir()]
    searched = {e.variant: e for e in read_results(run_dir / "results.json").explore}
    assert searched["unpatched"].failed and searched["unpatched"].seed == searched["unpatched"].failed_schedule
    assert not searched["patched"].failed and searched["patched"].guarantee is not None
    assert "no failure in 30 schedules (PCT, depth 2, seeds 1-30): a bug of depth 2 would have been found" in (
        completed.stdout
    )


@pytest.mark.parametrize(
    ("stop", "code"), [(signal.SIGINT, ExitCode.INTERRUPTED), (signal.SIGTERM, ExitCode.TERMINATED)]
)
def test_a_stop_signal_ends_a_search_at_once_keeps_what_was_searched_and_leaves_no_server(
    tmp_path: Path, stop: signal.Signals, code: ExitCode
) -> None:
    process = runs.start(
        tmp_path, "--explore", "--explore-strategy", "pct", "--explore-schedules", "5000", "--scenario", "tutorial-tabs"
    )
    try:
        # unpatched fails in its first schedules; patched and recommended are then searching their 5,000.
        runs.wait_until(lambda: len(runs.serving(tmp_path)) >= 3 and _explored(tmp_path), 120, "no build searched")
        servers = [runs.server_pid(folder) for folder in runs.serving(tmp_path)]
        process.send_signal(stop)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == code, err
    assert "stopped: what was measured is in " in err and "Traceback" not in err
    [run_dir] = [path for path in tmp_path.iterdir() if path.is_dir()]
    result = read_results(run_dir / "results.json")
    assert not result.complete
    # unpatched's search had ended; the others' were cut short and are kept as far as they got.
    searched = {e.variant: e for e in result.explore}
    assert set(searched) == {"unpatched", "patched", "recommended"} and searched["unpatched"].failed
    for cut in ("patched", "recommended"):
        assert searched[cut].searched.startswith("stopped after ") and searched[cut].schedules > 0
    assert (run_dir / "report.html").exists()
    runs.wait_gone(servers, 10)


def _explored(out: Path) -> bool:
    found = list(out.glob("*/results.json"))
    return bool(found) and bool(read_results(found[0]).explore)


def test_a_schedule_file_written_before_steps_had_points_replays_the_same(
    explored: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    run_dir, _ = explored
    saved = json.loads((run_dir / "schedules" / "unpatched.json").read_text())
    assert {step.pop("point") for step in saved["steps"]} == {"call"}  # the tutorial's Peewee has no SQLAlchemy
    older = tmp_path / "schedules" / "unpatched.json"
    older.parent.mkdir()
    older.write_text(json.dumps(saved))
    (tmp_path / "results.json").write_text((run_dir / "results.json").read_text())

    replayed = runs.harness("replay", older, "--out", tmp_path)

    assert replayed.returncode == ExitCode.OK, replayed.stdout + replayed.stderr
    assert "unpatched: reproduced: request B fails at step " in replayed.stdout


SHARED_SESSION_PROJECT = """\
scenario = "items"

[variants.shared]
app = "tests.harness.server.explored_sqlalchemy_app:shared"
factory = true
app_dir = "{repo}"
expect = "fails"
env = {{ DATABASE_URL = "{{database_url}}" }}

[variants.per-request]
app = "tests.harness.server.explored_sqlalchemy_app:per_request"
factory = true
app_dir = "{repo}"
env = {{ DATABASE_URL = "{{database_url}}" }}
"""
ITEMS = """\
description = "two items created at once"
[schedule]
kind = "burst"
requests = 2
[schedule.request]
method = "POST"
path = "/items"
json = { name = "item {i}" }
"""


def test_a_bug_inside_one_call_on_a_shared_sqlalchemy_session_is_found_shrunk_and_replayed_and_its_fix_is_clean(
    tmp_path: Path,
) -> None:
    """Only SQLAlchemy's hooks as scheduling points can show it: whole calls never overlap."""
    project = tmp_path / "project"
    (project / "scenarios").mkdir(parents=True)
    (project / "harness.toml").write_text(SHARED_SESSION_PROJECT.format(repo=runs.REPO))
    (project / "scenarios" / "items.toml").write_text(ITEMS)
    out = tmp_path / "out"

    def harness(*args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [str(runs.INSTALLED_HARNESS), *map(str, args)]
        return subprocess.run(
            command, cwd=project, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
        )

    searched = harness("run", "--explore", "--explore-schedules", "30", "--out", out)

    assert searched.returncode == ExitCode.OK, searched.stdout + searched.stderr
    [run_dir] = [path for path in out.iterdir() if path.is_dir()]
    found = {e.variant: e for e in read_results(run_dir / "results.json").explore}
    shared = found["shared"]
    assert shared.failed_schedule is not None and shared.failed_schedule <= 10, shared.searched
    assert shared.failure is not None and shared.failure.startswith(
        "DetachedInstanceError: Instance <Item at 0x...> is not bound to a Session"
    )
    assert len(shared.shrunk_requests) == 2 and shared.shrunk_deviations == 1 and shared.replayed is True
    [failed] = [step for step in shared.steps if step.error]
    assert failed.call == "endpoint (create_item)" and failed.resumes  # inside the call, where it had paused
    assert f"endpoint (create_item) resumed at {failed.point}, on worker {failed.worker} -> Detached" in (
        searched.stdout
    )
    clean = found["per-request"]
    assert not clean.failed and clean.schedules == 30 and clean.incomplete == 0

    replayed = harness("replay", run_dir / "schedules" / "shared.json", "--out", tmp_path / "replays")

    assert replayed.returncode == ExitCode.OK, replayed.stdout + replayed.stderr
    assert f"shared: reproduced: request {request_name(failed.request)} fails at step {failed.index}, " in (
        replayed.stdout
    )
