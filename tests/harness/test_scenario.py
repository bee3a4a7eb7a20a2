from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.scenario import Scenario, Schedule, load_scenario
from harness.variant import VARIANTS

VALID = """
trials = 3
time_scale = 0.1
[schedule]
kind = "staggered"
requests = 4
interval = 1.0
"""


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("schedule", "offsets"),
    [
        (Schedule(kind="staggered", requests=4, interval=1.0), [0.0, 0.5, 1.0, 1.5]),
        (Schedule(kind="burst", requests=3, interval=9.0), [0.0, 0.0, 0.0]),
        (Schedule(kind="waves", requests=5, wave_size=2, interval=2.0), [0.0, 0.0, 1.0, 1.0, 2.0]),
    ],
)
def test_offsets_follow_the_schedule_kind_scaled_by_time_scale(schedule: Schedule, offsets: list[float]) -> None:
    assert schedule.offsets(0.5) == offsets


def test_a_user_file_loads_with_defaults_and_its_stem_as_name(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, VALID))
    assert scenario.name == "mine"
    assert scenario.trials == 3
    assert scenario.schedule.path == "/slowusers/"
    assert scenario.seed.users == 2
    assert scenario.expectation(VARIANTS["unpatched"]) == "fails"
    assert scenario.expectation(VARIANTS["patched"]) == "clean"


def test_expectations_can_be_overridden(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, VALID + '[expect]\nunpatched = "clean"\n'))
    assert scenario.expectation(VARIANTS["unpatched"]) == "clean"


def test_to_dict_and_from_dict_round_trip() -> None:
    scenario = load_scenario("waves")
    assert Scenario.from_dict(scenario.to_dict()) == scenario


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trials = 3\n", "schedule: missing"),
        (VALID + "trails = 2\n", "unknown key"),
        (VALID.replace("trials = 3", "trials = 0"), "trials: expected a whole number >= 1, got 0"),
        (VALID.replace("trials = 3", "trials = -2"), "got -2"),
        (VALID.replace("trials = 3", 'trials = "3"'), "trials: expected a whole number >= 1, got '3'"),
        (VALID.replace("trials = 3", "trials = true"), "got True"),
        (VALID.replace("time_scale = 0.1", "time_scale = 0"), "time_scale: expected a number > 0"),
        (VALID.replace("time_scale = 0.1", "time_scale = nan"), "time_scale: expected a number > 0"),
        (VALID.replace('"staggered"', '"random"'), "[schedule] kind: expected one of"),
        (VALID.replace("requests = 4", "requests = 4.5"), "[schedule] requests"),
        (VALID + '[expect]\nsideways = "fails"\n', "[expect] sideways: unknown variant"),
        (VALID + '[expect]\npatched = "broken"\n', "[expect] patched: expected one of 'fails', 'clean'"),
        ("seed = 3\n" + VALID, "seed: expected a table"),
        (VALID.replace("interval = 1.0", 'interval = 1.0\npath = "slowusers"'), "must start with '/'"),
        (VALID.replace('kind = "staggered"', 'kind = "waves"'), "[schedule] wave_size: missing"),
    ],
)
def test_invalid_files_name_the_file_and_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.message.startswith(path)
    assert message in caught.value.message


def test_invalid_toml_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "trials = 3\n[schedule\n")
    with pytest.raises(ScenarioError, match=r"invalid TOML: .*line 2"):
        load_scenario(path)


def test_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(ScenarioError, match=r"unknown scenario 'bursty'.*burst, tutorial-tabs, waves"):
        load_scenario("bursty")


def test_missing_or_unreadable_files_are_scenario_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        load_scenario(str(tmp_path / "absent.toml"))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioError, match="not a UTF-8 text file"):
        load_scenario(str(binary))


def test_builtins_load_by_name_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert os.getcwd() == str(tmp_path)
    assert load_scenario("burst").schedule.kind == "burst"
