from __future__ import annotations

from harness.config import builtin_config
from harness.scenario import builtin_scenarios


def test_the_three_builtins_are_shipped_and_valid() -> None:
    scenarios = builtin_scenarios()
    assert set(scenarios) == {"tutorial-tabs", "burst", "waves"}
    for name, scenario in scenarios.items():
        assert scenario.name == name
        assert scenario.description
        assert scenario.expectation(builtin_config().variants["unpatched"]) == "fails"
        assert scenario.expectation(builtin_config().variants["patched"]) == "clean"


def test_tutorial_tabs_is_the_tutorials_recipe_scaled_to_about_a_second() -> None:
    scenario = builtin_scenarios()["tutorial-tabs"]
    offsets = scenario.schedule.offsets(scenario.time_scale)
    assert len(offsets) == 10
    assert scenario.schedule.request.path == "/slowusers/"
    # 10 tabs, one a tutorial-second apart; the first request sleeps 9 tutorial-seconds.
    assert offsets[1] - offsets[0] == scenario.time_scale
    assert 0.5 <= 9 * scenario.time_scale <= 1.5
    assert scenario.seed.users >= 2 and scenario.seed.items_per_user >= 1
