from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness.config import builtin_config
from harness.errors import UsageError
from harness.plan import build_plan
from harness.scenario import load_scenario
from harness.settings import resolve

LEAKS = replace(load_scenario("burst"), name="leaks", fail_on=("5xx", "leak"))


def test_a_run_without_the_trace_cannot_fail_on_a_leak_and_stops_before_it_starts(tmp_path: Path) -> None:
    config = builtin_config()

    with pytest.raises(UsageError) as raised:
        build_plan(config, resolve({"trace": False}, config), scenario=LEAKS, run_dir=tmp_path)

    assert raised.value.message == (
        "scenario leaks: fail_on has 'leak', which only the server-side trace can show, and --no-trace turns it "
        "off: leave one of them out"
    )
    plain = replace(LEAKS, fail_on=("5xx",))
    assert not build_plan(config, resolve({"trace": False}, config), scenario=plain, run_dir=tmp_path).trace
    assert build_plan(config, resolve({}, config), scenario=LEAKS, run_dir=tmp_path).trace


def test_a_server_of_the_users_has_no_trace_to_fail_on_a_leak_by(tmp_path: Path) -> None:
    config = builtin_config()

    with pytest.raises(UsageError) as raised:  # refused before the harness sends it anything: no server listens
        build_plan(config, resolve({}, config), scenario=LEAKS, run_dir=tmp_path, url="http://127.0.0.1:9")

    assert "--url names a server of yours: leave 'leak' out of fail_on" in raised.value.message


def test_explore_mode_does_not_judge_leaks_and_a_scenario_that_fails_on_them_is_refused(tmp_path: Path) -> None:
    config = builtin_config()

    with pytest.raises(UsageError) as raised:
        build_plan(config, resolve({"explore": True}, config), scenario=LEAKS, run_dir=tmp_path)

    assert raised.value.message == (
        "scenario leaks: fail_on has 'leak', and explore mode judges a build by the errors its schedules raise, not "
        "by its connections: leave --explore out, or 'leak'"
    )
