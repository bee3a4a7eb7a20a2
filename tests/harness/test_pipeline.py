"""The whole run on real uvicorn servers: what a user relies on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness.environment import PACKAGES
from harness.errors import ExitCode
from harness.pipeline import RunPlan, execute, make_run_dir
from harness.results import read_results
from harness.scenario import load_scenario
from harness.variant import VARIANTS, get_variants
from tests.conftest import is_running

pytestmark = pytest.mark.e2e


def test_burst_breaks_the_unpatched_build_with_connection_already_opened(tmp_path: Path) -> None:
    scenario = replace(load_scenario("burst"), trials=3)
    plan = RunPlan(scenario=scenario, variants=tuple(get_variants()), run_dir=make_run_dir(tmp_path, scenario))
    seen: list[int] = []

    def on_trial(trial: int, results: object) -> None:
        written = read_results(plan.results_path)
        assert (len(written.trials), written.complete) == (2 * trial, False)
        seen.append(trial)

    result = execute(plan, on_trial=on_trial)

    assert seen == [1, 2, 3]
    unpatched, patched = result.summaries
    assert unpatched.failed_trials >= 1 and unpatched.server_errors >= 1
    failed = [r for t in result.trials for r in t.records if r.variant == "unpatched" and r.outcome == "server-error"]
    assert all(r.status == 500 for r in failed)
    assert all(
        [(e.type, e.message) for e in r.exceptions] == [("peewee.OperationalError", "Connection already opened.")]
        for r in failed
    )
    assert "Connection already opened." in failed[0].exceptions[0].traceback
    assert (patched.server_errors, patched.transport_errors, patched.timeouts) == (0, 0, 0)
    assert patched.requests == unpatched.requests == 3 * scenario.schedule.requests
    assert [v.kind for v in result.verdicts] == ["met", "met"]
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
    plan = RunPlan(scenario=scenario, variants=(VARIANTS["unpatched"],), run_dir=make_run_dir(tmp_path, scenario))

    result = execute(plan)

    [verdict] = result.verdicts
    if result.summaries[0].server_errors:
        pytest.fail(f"a single request failed on its own: {result.summaries[0]}")
    assert verdict.kind == "silent"
    assert result.exit_code is ExitCode.SILENT
    assert "went silent" in verdict.reason and "no request of its 1 trials" in verdict.reason


def test_requests_that_time_out_are_recorded_as_timeouts_and_keep_a_build_from_clean(tmp_path: Path) -> None:
    path = tmp_path / "hang.toml"
    path.write_text(
        "trials = 1\ntime_scale = 1\nrequest_timeout = 0.3\n"
        '[seed]\nusers = 1\nitems_per_user = 0\n[schedule]\nkind = "burst"\nrequests = 2\n'
    )
    scenario = load_scenario(str(path))
    plan = RunPlan(scenario=scenario, variants=(VARIANTS["patched"],), run_dir=make_run_dir(tmp_path, scenario))

    result = execute(plan)

    [trial] = result.trials
    scheduled = [r for r in trial.records if r.phase == "schedule"]
    assert [(r.outcome, r.status) for r in scheduled] == [("timeout", None), ("timeout", None)]
    assert all(r.error and r.error.startswith("ReadTimeout") for r in scheduled)
    assert all(r.completed_at is not None and 0.3 <= r.completed_at - r.sent_at < 2 for r in scheduled)
    [verdict] = result.verdicts
    assert (verdict.observed, verdict.kind) == ("degraded", "regression")
    assert result.exit_code is ExitCode.REGRESSION
    assert not is_running(trial.pid or 0)
