"""A sweep's grid, cost, detection rule and winner, on synthetic results: no server is started."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from harness.config import builtin_config
from harness.errors import ExitCode, UsageError
from harness.grid import SweepPlan, check_grid, detects, winner_scenario
from harness.results import SweepCell, SweepSettings
from harness.scenario import load_scenario
from harness.variant import Expectation
from tests.harness.factories import cell, make_sweep, sweep_settings


@pytest.fixture
def plan_for(tmp_path: Path) -> Callable[[SweepSettings], SweepPlan]:
    def make(settings: SweepSettings) -> SweepPlan:
        return SweepPlan(settings=settings, variants=tuple(builtin_config().get_variants()), sweep_dir=tmp_path)

    return make


def test_the_grid_is_every_pair_cheapest_first(plan_for: Callable[[SweepSettings], SweepPlan]) -> None:
    plan = plan_for(sweep_settings((1.0, 0.25), (20, 1, 5)))
    cells = [(c.in_flight, c.interval) for c in plan.cells]
    assert sorted(cells) == sorted((n, i) for n in (1, 5, 20) for i in (0.25, 1.0))
    costs = [plan.cost(c) for c in plan.cells]
    assert costs == sorted(costs)
    assert cells[:2] == [(1, 0.25), (1, 1.0)]
    assert cells[-1] == (20, 1.0)


def test_cost_is_requests_per_trial_times_planned_seconds(plan_for: Callable[[SweepSettings], SweepPlan]) -> None:
    plan = plan_for(sweep_settings((0.5,), (10,)))
    ten_every_half = SweepCell(interval=0.5, in_flight=10)
    # Three waves at time scale 0.05: the last leaves 2 x 0.5 tutorial-seconds in, the first request sleeps 9.
    assert plan.planned_seconds(ten_every_half) == pytest.approx((2 * 0.5 + 9) * 0.05)
    assert plan.cost(ten_every_half) == pytest.approx(30 * 0.5)


@pytest.mark.parametrize(
    ("intervals", "in_flight", "waves", "message"),
    [
        ([0.5], [10, 2000], 3, "--in-flight 2000 x --waves 3 is 6000 requests a trial, more than the 5,000"),
        ([0.5, 1.0], [1], 1, "--waves 1 is a single wave"),
        ([0.1 * n for n in range(1, 8)], list(range(1, 8)), 3, "the grid has 49 cells (7 intervals x 7 in flight)"),
    ],
)
def test_a_grid_that_cannot_be_run_is_a_usage_error(
    intervals: list[float], in_flight: list[int], waves: int, message: str
) -> None:
    settings = replace(sweep_settings(tuple(intervals), tuple(in_flight)), waves=waves)
    with pytest.raises(UsageError, match=re.escape(message)) as raised:
        check_grid(settings, max_cells=40)
    assert raised.value.exit_code is ExitCode.USAGE_ERROR


def test_a_grid_that_can_be_run_is_taken_as_it_is() -> None:
    settings = sweep_settings((0.0, 0.5), (1, 40))
    assert check_grid(settings, max_cells=4) is settings


def test_the_cheapest_cell_that_detected_wins() -> None:
    sweep = make_sweep(
        (
            cell(1, 0.5, failed=0, cost=1),
            cell(5, 0.5, failed=9, cost=5),  # caught in 9 of 10: short of 99%
            cell(10, 0.5, failed=10, cost=10),
            cell(20, 0.5, failed=10, cost=20),
        )
    )
    assert sweep.winner == SweepCell(interval=0.5, in_flight=10)
    assert sweep.exit_code is ExitCode.OK


def test_a_cell_where_the_patched_build_failed_never_wins_and_is_a_regression() -> None:
    sweep = make_sweep((cell(10, 0.5, failed=10, patched_failed=1, cost=10), cell(20, 0.5, failed=10, cost=20)))
    assert sweep.winner == SweepCell(interval=0.5, in_flight=20)
    assert sweep.exit_code is ExitCode.REGRESSION


def test_a_cell_cut_short_never_wins() -> None:
    sweep = make_sweep((cell(10, 0.5, failed=10, cost=10, complete=False), cell(20, 0.5, failed=10, cost=20)))
    assert sweep.winner == SweepCell(interval=0.5, in_flight=20)


def test_with_confirmations_the_winner_is_the_cheapest_cell_confirmed() -> None:
    sweep = make_sweep(
        (
            cell(10, 0.5, failed=10, cost=10),
            cell(20, 0.5, failed=10, cost=20),
            cell(10, 0.5, failed=48, trials=50, cost=10, stage="confirm"),  # 96%: lucky in the grid
            cell(20, 0.5, failed=50, trials=50, cost=20, stage="confirm"),
        )
    )
    assert sweep.winner == SweepCell(interval=0.5, in_flight=20)


def test_at_100_trials_one_miss_still_detects_at_99_percent() -> None:
    sweep = make_sweep((cell(10, 0.5, failed=99, trials=100), cell(5, 0.5, failed=98, trials=100, cost=1)))
    assert sweep.winner == SweepCell(interval=0.5, in_flight=10)


def test_at_target_1_every_trial_must_fail() -> None:
    summaries = cell(10, 0.5, failed=99, trials=100).summaries
    expected: dict[str, Expectation] = {"unpatched": "fails", "patched": "clean"}
    assert detects(summaries, expected, 0.99)
    assert not detects(summaries, expected, 1.0)
    assert detects(cell(10, 0.5, failed=100, trials=100).summaries, expected, 1.0)


def test_without_a_detecting_cell_there_is_no_winner_and_the_sweep_is_silent() -> None:
    sweep = make_sweep((cell(1, 0.5, failed=0), cell(10, 0.5, failed=7)))
    assert sweep.winner is None
    assert sweep.exit_code is ExitCode.SILENT


def test_the_winner_is_written_as_a_scenario_the_loader_runs_as_is(
    tmp_path: Path, plan_for: Callable[[SweepSettings], SweepPlan]
) -> None:
    plan = plan_for(sweep_settings((0.5, 1.0), (10, 20)))
    sweep = make_sweep((cell(10, 0.5, failed=10), cell(20, 1.0, failed=10, cost=40)))
    path = tmp_path / "winner.toml"
    text = winner_scenario(plan, sweep, results_path=tmp_path / "sweep.json")
    path.write_text(text)

    scenario = load_scenario(str(path))
    assert scenario == plan.scenario(SweepCell(interval=0.5, in_flight=10), trials=10)
    assert (scenario.schedule.kind, scenario.schedule.wave_size, scenario.schedule.requests) == ("waves", 10, 30)
    assert (scenario.schedule.interval, scenario.time_scale) == (0.5, 0.05)
    assert scenario.expect == {"unpatched": "fails", "patched": "clean", "recommended": "clean"}
    assert text.startswith("# Written by harness sweep")
    assert f"# Sweep results: {tmp_path / 'sweep.json'}" in text
    assert "unpatched failed 10 of 10 trials" in text
    assert tomllib.loads(text)["schedule"]["kind"] == "waves"


def test_the_estimate_counts_rounds_of_jobs_and_one_confirmation(
    plan_for: Callable[[SweepSettings], SweepPlan],
) -> None:
    one_at_a_time = plan_for(sweep_settings((0.5,), (10,), jobs=1))
    two_at_a_time = plan_for(sweep_settings((0.5,), (10,), jobs=2))
    trial = one_at_a_time.trial_seconds(SweepCell(interval=0.5, in_flight=10))
    assert one_at_a_time.estimated_seconds() == pytest.approx((10 + 50) * trial)
    assert two_at_a_time.estimated_seconds() == pytest.approx((5 + 25) * trial)


def test_a_database_axis_multiplies_the_grid_and_names_the_cells_off_sqlite(
    plan_for: Callable[[SweepSettings], SweepPlan],
) -> None:
    settings = replace(sweep_settings((0.5,), (1, 5)), databases=("sqlite", "postgres"))
    plan = plan_for(check_grid(settings))

    assert settings.size == 4
    assert [(c.in_flight, c.database) for c in plan.cells] == [
        (1, "sqlite"),
        (1, "postgres"),
        (5, "sqlite"),
        (5, "postgres"),
    ]
    assert [plan.scenario(c).name for c in plan.cells[:2]] == [
        "sweep-1-in-flight-every-0.5",
        "sweep-1-in-flight-every-0.5-on-postgres",
    ]


def test_cells_on_postgres_are_estimated_dearer_and_a_users_server_starts_none(
    plan_for: Callable[[SweepSettings], SweepPlan],
) -> None:
    on_sqlite = plan_for(replace(sweep_settings((0.5,), (5,)), confirm_trials=0))
    on_both = plan_for(replace(on_sqlite.settings, databases=("sqlite", "postgres")))
    sqlite_cell, postgres_cell = on_both.cells

    assert on_both.trial_seconds(postgres_cell) > on_both.trial_seconds(sqlite_cell)
    own_server = on_both.estimated_seconds() - 2 * on_sqlite.estimated_seconds()
    users_server = replace(on_both, database_url="postgresql://u@127.0.0.1/postgres").estimated_seconds()
    assert own_server > users_server - 2 * on_sqlite.estimated_seconds() > 0
