"""The whole run on real uvicorn servers: what a user relies on."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from harness.config import builtin_config
from harness.environment import PACKAGES
from harness.errors import AppError, ExitCode
from harness.files import make_run_dir
from harness.journal import read_journal
from harness.pipeline import execute
from harness.plan import RunPlan
from harness.results import TRIALS_FILE, read_results
from harness.scenario import Scenario, Seed, load_scenario
from harness.summary import format_summary
from harness.variant import Variant
from tests.conftest import is_running
from tests.harness import faulty_apps, runs

pytestmark = pytest.mark.e2e


def test_burst_breaks_the_unpatched_build_with_connection_already_opened(tmp_path: Path) -> None:
    scenario = replace(load_scenario("burst"), trials=2)  # two rounds: the results file is rewritten after each
    plan = RunPlan(
        scenario=scenario,
        variants=tuple(builtin_config().get_variants()),
        run_dir=make_run_dir(tmp_path, scenario.name),
    )
    seen: list[int] = []

    def on_trial(trial: int, results: object) -> None:
        written = read_results(plan.results_path)
        assert (len(written.trials), written.complete) == (3 * trial, False)
        seen.append(trial)

    result = execute(plan, on_trial=on_trial)

    assert seen == [1, 2]
    unpatched, patched, recommended = result.summaries
    assert unpatched.failed_trials >= 1 and unpatched.server_errors >= 1
    failed = [r for t in result.trials for r in t.records if r.variant == "unpatched" and r.outcome == "server-error"]
    assert all(r.status == 500 for r in failed)
    assert all(
        [(e.type, e.message) for e in r.exceptions] == [("peewee.OperationalError", "Connection already opened.")]
        for r in failed
    )
    assert "Connection already opened." in failed[0].exceptions[0].traceback
    for clean in (patched, recommended):
        assert (clean.server_errors, clean.transport_errors, clean.timeouts) == (0, 0, 0)
    requests = scenario.trials * scenario.schedule.requests
    assert patched.requests == recommended.requests == unpatched.requests == requests
    assert [v.kind for v in result.verdicts] == ["met", "met", "met"]
    assert result.exit_code is ExitCode.OK

    assert all(not is_running(t.pid) for t in result.trials if t.pid)
    assert read_results(plan.results_path) == result
    assert result.complete
    assert set(result.environment) >= {"python", *PACKAGES}
    for t in result.trials:
        sent = [r for r in t.records if r.phase == "schedule"]
        assert [r.index for r in sent] == list(range(scenario.schedule.requests))
        assert all(r.completed_at is not None and r.completed_at >= r.sent_at >= r.planned_offset for r in sent)


def test_a_silent_reproducer_exits_2_and_says_so(tmp_path: Path) -> None:
    # One request at a time cannot collide: the unpatched build stays clean, and the
    # harness must say that the reproducer went silent instead of calling it a pass.
    tabs = load_scenario("tutorial-tabs")
    scenario = replace(tabs, trials=1, schedule=replace(tabs.schedule, requests=1))
    plan = RunPlan(
        scenario=scenario,
        variants=(builtin_config().variants["unpatched"],),
        run_dir=make_run_dir(tmp_path, scenario.name),
    )

    result = execute(plan)

    [verdict] = result.verdicts
    if result.summaries[0].server_errors:
        pytest.fail(f"a single request failed on its own: {result.summaries[0]}")
    assert verdict.kind == "silent"
    assert result.exit_code is ExitCode.SILENT
    assert "went silent" in verdict.reason and "no request of its 1 trials" in verdict.reason


def _beside_patched(variant: Variant, tmp_path: Path) -> RunPlan:
    """A small burst of ``variant`` and the patched build side by side."""
    scenario = _small_burst(requests=5)
    variants = (builtin_config().variants["patched"], variant)
    return RunPlan(scenario=scenario, variants=variants, run_dir=make_run_dir(tmp_path, scenario.name))


def test_variants_that_cannot_start_are_reported_with_reason_and_log_and_the_others_still_run(tmp_path: Path) -> None:
    crashes = faulty_apps.variant("crashes_at_startup")
    plan = _beside_patched(crashes, tmp_path)

    result = execute(plan)

    assert [(v.variant, v.kind) for v in result.verdicts] == [("patched", "met"), ("crashes_at_startup", "error")]
    assert result.exit_code is ExitCode.HARNESS_ERROR
    assert result.summaries[0].ok == 5
    errors = {t.variant: t.error or "" for t in result.trials}
    assert errors["crashes_at_startup"].startswith("variant 'crashes_at_startup' exited with code 3")
    assert "cannot reach the database (test app)" in errors["crashes_at_startup"]
    assert "crashes_at_startup trial 1: variant 'crashes_at_startup' exited" in format_summary(result)
    assert all(not is_running(t.pid) for t in result.trials if t.pid)


def test_an_app_that_does_not_import_stops_the_run_with_its_import_error_and_keeps_what_was_measured(
    tmp_path: Path,
) -> None:
    broken = faulty_apps.variant("broken_import")
    plan = _beside_patched(broken, tmp_path)

    with pytest.raises(AppError) as caught:
        execute(plan)

    assert caught.value.exit_code is ExitCode.USAGE_ERROR
    assert caught.value.message.startswith("variant 'broken_import': app 'tests.harness.broken_import:app' did not")
    assert "ImportError: cannot import name 'no_such_name'" in caught.value.message
    saved = read_results(plan.results_path)
    assert not saved.complete
    assert {t.variant for t in saved.trials} == {"patched", "broken_import"}
    assert all(not is_running(t.pid) for t in saved.trials if t.pid)


@pytest.mark.slow
def test_a_variant_that_never_gets_ready_is_given_up_at_the_start_timeout(tmp_path: Path) -> None:
    scenario = _small_burst(requests=2)
    never = faulty_apps.variant("never_ready")
    plan = RunPlan(scenario=scenario, variants=(never,), run_dir=make_run_dir(tmp_path, scenario.name), start_timeout=2)

    result = execute(plan)

    [trial] = result.trials
    assert trial.error and trial.error.startswith("variant 'never_ready' did not start within 2 s")
    assert "Waiting for application startup." in trial.error  # the last lines of its log
    assert result.duration < 2 + 5 + 3  # the start timeout, the stop timeout, slack for a loaded machine
    assert result.exit_code is ExitCode.HARNESS_ERROR
    assert not is_running(trial.pid or 0)


def test_a_server_that_hangs_gives_timeouts_counted_apart_from_5xx(tmp_path: Path) -> None:
    hangs = faulty_apps.variant("hangs")
    scenario = replace(_small_burst(requests=3), request_timeout=0.5)
    plan = RunPlan(scenario=scenario, variants=(hangs,), run_dir=make_run_dir(tmp_path, scenario.name))

    result = execute(plan)

    [trial] = result.trials
    assert [(r.outcome, r.status) for r in trial.records] == [("timeout", None)] * 3
    [summary] = result.summaries
    assert (summary.timeouts, summary.server_errors, summary.failed_trials) == (3, 0, 0)
    [verdict] = result.verdicts
    assert (verdict.observed, verdict.kind) == ("degraded", "regression")
    assert "3 timeouts, counted apart" in verdict.reason
    assert not is_running(trial.pid or 0)


def test_a_server_killed_mid_trial_leaves_transport_errors_a_marked_trial_and_the_run_goes_on(tmp_path: Path) -> None:
    # Three requests at once that sleep 2.7, 2.4 and 2.1 s: all in flight when the server is killed.
    path = tmp_path / "slow-burst.toml"
    path.write_text(
        "trials = 2\ntime_scale = 0.3\n"
        '[seed]\nusers = 1\nitems_per_user = 0\n[schedule]\nkind = "burst"\nrequests = 3\n'
    )
    out = tmp_path / "out"
    process = runs.start(out, "--scenario", str(path), "--variant", "patched")
    try:
        runs.wait_until(lambda: bool(runs.serving(out)), 60, "the server never came up")
        [first] = runs.serving(out)
        runs.wait_until(lambda: "POST /users/" in (first / "server.log").read_text(), 30, "seeding never happened")
        time.sleep(0.5)
        os.kill(runs.server_pid(first), signal.SIGKILL)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == ExitCode.REGRESSION, err
    assert "trial 1/2  patched: 3 of 3 requests unanswered (its server died, exit code -9)" in err
    assert "trial 2/2  patched: clean" in err
    [results] = out.glob("*/results.json")
    killed, second = read_results(results).trials
    assert killed.server_exit_code == -signal.SIGKILL and killed.error is None
    assert [r.outcome for r in killed.records if r.phase == "schedule"] == ["transport-error"] * 3
    assert second.server_exit_code is None
    assert [r.outcome for r in second.records if r.phase == "schedule"] == ["ok"] * 3


def test_each_round_appends_its_trials_and_rewrites_none(tmp_path: Path) -> None:
    config = builtin_config()
    plan = RunPlan(
        scenario=replace(_small_burst(requests=20), trials=2),
        variants=(config.variants["unpatched"], config.variants["patched"]),
        run_dir=make_run_dir(tmp_path, "burst"),
    )
    trials_file = plan.results_path.with_name(TRIALS_FILE)
    after_each_round: list[bytes] = []

    result = execute(plan, on_trial=lambda trial, _: after_each_round.append(trials_file.read_bytes()))

    first, second = after_each_round
    assert len(first.splitlines()) == 2 and second.startswith(first) and len(second.splitlines()) == 4
    assert trials_file.read_bytes() == second
    assert read_results(plan.results_path).trials == result.trials
    # What the servers wrote for the harness is in trials.jsonl, not also beside their logs.
    left = {path.name for path in plan.run_dir.glob("servers/*/*")}
    assert "server.log" in left and not left & {"events.jsonl", "trace.jsonl"}


def _small_burst(*, requests: int) -> Scenario:
    burst = load_scenario("burst")
    return replace(
        burst, trials=1, seed=Seed(users=0, items_per_user=0), schedule=replace(burst.schedule, requests=requests)
    )


@pytest.mark.slow
def test_a_2000_request_scenario_records_every_request_once_in_its_trials_file(tmp_path: Path) -> None:
    # Its memory is measured by benchmarks/memory_2000.py, not here.
    path = tmp_path / "waves-2000.toml"
    path.write_text(
        'trials = 1\ntime_scale = 0.05\n[schedule]\nkind = "waves"\nrequests = 2000\nwave_size = 200\ninterval = 1.0\n'
    )
    scenario = load_scenario(str(path))
    plan = RunPlan(
        scenario=scenario,
        variants=(builtin_config().variants["patched"],),
        run_dir=make_run_dir(tmp_path, scenario.name),
    )

    result = execute(plan)

    [trial] = result.trials
    scheduled = [r for r in trial.records if r.phase == "schedule"]
    assert scheduled == list(trial.records)  # the file has no seed steps: nothing is sent before the schedule
    assert [r.index for r in scheduled] == list(range(2000))
    assert all(r.completed_at is not None and r.outcome != "interrupted" for r in scheduled)
    assert result.summaries[0].requests == 2000
    assert read_results(plan.results_path).trials == result.trials
    assert len(plan.results_path.with_name(TRIALS_FILE).read_text().splitlines()) == 1
    assert read_journal(plan.journal_path) == []  # cleared once the round's trials were in trials.jsonl
