"""The user's configuration (harness.toml, [tool.harness]) and generic scenarios, without servers."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import Config, builtin_config, load_config
from harness.errors import ConfigError, ExitCode, ScenarioError
from harness.scenario import HttpRequest, Scenario, load_scenario, scenario_toml
from harness.settings import resolve
from harness.variant import Variant

TWO_BUILDS = """\
trials = 3
jobs = 2
out = "runs"

[variants.old]
app = "shop.main:old_app"
expect = "fails"
description = "before the fix"
env = { DATABASE = "{tmp}/shop.sqlite3", PORT = "{port}", SCALE = "{time_scale}" }
ready = "/health"

[variants.new]
app = "shop.main:create_app"
factory = true
app_dir = "src"
env_file = "test.env"
"""

GENERIC_SCENARIO = """\
description = "orders at once"
trials = 2
request_timeout = 1.5
fail_on = ["5xx", "timeout"]

[[seed]]
method = "post"
path = "/customers/"
json = { name = "customer {i}", tags = ["trial {trial}"], "{i}" = 1 }
repeat = 3

[[seed]]
method = "PUT"
path = "/stock/{trial}"
headers = { Authorization = "Bearer {trial}" }

[schedule]
kind = "waves"
requests = 6
wave_size = 3
interval = 0.5

[schedule.request]
method = "POST"
path = "/orders/{i}"
json = { customer = "customer {i}", trial = "{trial}" }
headers = { X-Trial = "{trial}" }
"""


@pytest.fixture(autouse=True)
def no_harness_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own HARNESS_* variables must not change what these tests see."""
    for name in list(os.environ):
        if name.startswith("HARNESS_"):
            monkeypatch.delenv(name)


def project(folder: Path, text: str = TWO_BUILDS, *, name: str = "harness.toml") -> Path:
    """A user's project folder with this configuration file, and the folders and files it names."""
    (folder / "src").mkdir(exist_ok=True)
    (folder / "test.env").write_text("API_KEY=test\n")
    path = folder / name
    path.write_text(text)
    return path


def test_harness_toml_in_the_current_folder_declares_the_builds_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = project(tmp_path)
    monkeypatch.chdir(tmp_path)

    config = load_config()

    assert config.path == path
    assert list(config.variants) == ["old", "new"]
    old, new = config.variants.values()
    assert (old.app, old.expect, old.description, old.factory, old.ready) == (
        "shop.main:old_app",
        "fails",
        "before the fix",
        False,
        "/health",
    )
    assert old.env == {"DATABASE": "{tmp}/shop.sqlite3", "PORT": "{port}", "SCALE": "{time_scale}"}
    assert old.uses_port and not new.uses_port
    assert old.app_dir == str(tmp_path)  # default: the configuration file's folder
    assert (new.app, new.factory, new.expect, new.ready) == ("shop.main:create_app", True, "clean", None)
    assert new.app_dir == str(tmp_path / "src")
    assert new.env_file == str(tmp_path / "test.env")
    assert config.settings == {"trials": 3, "jobs": 2, "out": str(tmp_path / "runs")}
    assert [v.name for v in config.get_variants(["new", "old", "new"])] == ["new", "old"]


def test_paths_in_the_file_are_relative_to_the_file_not_to_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "project").mkdir()
    path = project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "src").mkdir()  # a folder of the same name where the harness is run must not be taken
    monkeypatch.chdir(elsewhere)

    config = load_config(Path("../project/harness.toml"))

    assert config.path == path
    assert config.variants["old"].app_dir == str(path.parent)
    assert config.variants["new"].app_dir == str(path.parent / "src")
    assert config.settings["out"] == str(path.parent / "runs")


def test_a_builds_python_is_relative_to_the_file_with_its_tilde_expanded_and_its_link_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    venv = tmp_path / "project" / "legacy" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)  # as a virtualenv's is: resolved, it would not be the virtualenv's
    monkeypatch.setenv("HOME", str(tmp_path / "project"))
    path = tmp_path / "project" / "harness.toml"
    path.write_text(
        '[variants.old]\napp = "shop:app"\npython = "legacy/bin/python"\n'
        '[variants.home]\napp = "shop:app"\npython = "~/legacy/bin/python"\n'
        '[variants.own]\napp = "shop:app"\n'
    )
    monkeypatch.chdir(tmp_path)

    variants = load_config(path).variants

    assert variants["old"].python == variants["home"].python == str(venv / "python")
    assert variants["own"].python is None
    main(["config", "--config", str(path)])  # the variants are shown before the built-in scenario's check of them
    assert (
        f"  old: app shop:app; expect clean; app_dir {path.parent}; ready once listening; python {venv / 'python'}\n"
        in (capsys.readouterr().out)
    )


def test_a_scenario_path_in_the_file_is_relative_to_the_file_not_to_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "project" / "checks").mkdir(parents=True)
    (tmp_path / "project" / "checks" / "orders.toml").write_text(GENERIC_SCENARIO)
    path = project(tmp_path / "project", 'scenario = "checks/orders.toml"\n' + TWO_BUILDS)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")

    config = load_config(path)

    scenario = config.scenario(resolve({}, config)["scenario"].value)
    assert (scenario.name, scenario.description) == ("orders", "orders at once")


def test_pyproject_tool_harness_is_read_when_there_is_no_harness_toml(tmp_path: Path) -> None:
    text = '[project]\nname = "shop"\n\n[tool.harness]\ntrials = 4\n\n[tool.harness.variants.main]\napp = "shop:app"\n'
    path = project(tmp_path, text, name="pyproject.toml")

    config = load_config(folder=tmp_path)

    assert config.path == path
    assert list(config.variants) == ["main"]
    assert config.variants["main"].app_dir == str(tmp_path)
    assert config.settings == {"trials": 4}


def test_harness_toml_wins_over_pyproject_and_a_pyproject_without_tool_harness_is_not_a_configuration(
    tmp_path: Path,
) -> None:
    project(tmp_path, '[project]\nname = "shop"\n', name="pyproject.toml")
    assert load_config(folder=tmp_path).path is None  # the built-in one

    (tmp_path / "pyproject.toml").write_text('[tool.harness.variants.main]\napp = "shop:app"\n')
    toml = project(tmp_path, '[variants.other]\napp = "shop:other"\n')
    assert load_config(folder=tmp_path).path == toml


def test_config_option_and_harness_config_variable_pick_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(tmp_path)
    other = tmp_path / "ci"
    other.mkdir()
    by_variable = project(other, '[variants.ci]\napp = "shop:app"\n', name="ci.toml")
    by_option = project(other, '[variants.option]\napp = "shop:app"\n', name="option.toml")
    monkeypatch.chdir(tmp_path)

    monkeypatch.setenv("HARNESS_CONFIG", str(by_variable))
    assert list(load_config().variants) == ["ci"]
    assert list(load_config(by_option).variants) == ["option"]  # the command line wins

    monkeypatch.setenv("HARNESS_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"HARNESS_CONFIG: no configuration file .*missing\.toml"):
        load_config()
    with pytest.raises(ConfigError, match=r"--config: no configuration file .*absent\.toml"):
        load_config(tmp_path / "absent.toml")


def test_settings_come_from_command_line_then_environment_then_file_then_built_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(tmp_path)
    monkeypatch.chdir(tmp_path)
    config = load_config()

    resolved = resolve({}, config)
    assert (resolved["trials"].value, resolved["trials"].source, resolved["trials"].origin) == (
        3,
        "config file",
        str(tmp_path / "harness.toml"),
    )
    assert (resolved["start_timeout"].value, resolved["start_timeout"].source) == (30.0, "built-in")
    assert (resolved["scenario"].value, resolved["scenario"].source) == (None, "built-in")  # Config.default_scenario

    monkeypatch.setenv("HARNESS_TRIALS", "5")
    monkeypatch.setenv("HARNESS_TRACE", "no")
    monkeypatch.setenv("HARNESS_START_TIMEOUT", "")  # empty: as if not set
    resolved = resolve({}, config)
    assert (resolved["trials"].value, resolved["trials"].source, resolved["trials"].origin) == (
        5,
        "environment",
        "HARNESS_TRIALS",
    )
    assert (resolved["trace"].value, resolved["trace"].source) == (False, "environment")
    assert resolved["start_timeout"].source == "built-in"
    assert (resolved["jobs"].value, resolved["jobs"].source) == (2, "config file")

    resolved = resolve({"trials": 7, "jobs": None}, config)  # an option not given is None
    assert (resolved["trials"].value, resolved["trials"].source) == (7, "command line")
    assert (resolved["jobs"].value, resolved["jobs"].source) == (2, "config file")


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("HARNESS_TRIALS", "many", "HARNESS_TRIALS='many': "),
        ("HARNESS_TRIALS", "0", "HARNESS_TRIALS='0': expected a whole number from 1 to 1,000, got '0'"),
        ("HARNESS_TRIALS", "2.5", "HARNESS_TRIALS='2.5': "),
        ("HARNESS_CONFIDENCE", "1.5", "HARNESS_CONFIDENCE='1.5': expected a number between 0 and 1"),
        ("HARNESS_TRACE", "maybe", "HARNESS_TRACE='maybe': expected true or false, got 'maybe'"),
    ],
)
def test_a_bad_harness_variable_is_a_config_error_naming_the_variable(
    variable: str, value: str, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        resolve({}, builtin_config())
    assert raised.value.message.startswith(problem)
    assert "\n" not in raised.value.message


@pytest.mark.parametrize(
    ("variant", "line", "problem"),
    [
        ('app = "shop:app"\ncolour = "blue"', 3, "[variants.main] colour: unknown key; expected one of: app, app_dir"),
        (
            'app = "shop:app"\nenv = { DATABASE = "{temp}/db.sqlite3" }',
            3,
            "[variants.main] env: unknown placeholder {temp} in '{temp}/db.sqlite3'; known: {tmp}, {port}, "
            "{time_scale}",
        ),
        ('app = "shop.main"', 2, '[variants.main] app: expected "package.module:attribute", as uvicorn takes it'),
        ('app = "shop:app"\nready = "health"', 3, "[variants.main] ready: must be a path starting with '/'"),
        ('app = "shop:app"\napp_dir = "nowhere"', 3, "[variants.main] app_dir: no folder "),
        ('app = "shop:app"\nexpect = "broken"', 3, "[variants.main] expect: expected one of 'fails', 'clean'"),
        ('description = "no app"', 1, "[variants.main] app: missing"),
        ('app = "shop:app"\npython = "venv/bin/python"', 3, "[variants.main] python: no file "),
        (
            'app = "shop:app"\npython = ""',
            3,
            "[variants.main] python: expected the path of a Python interpreter, got ''",
        ),
    ],
)
def test_an_invalid_build_is_a_config_error_naming_file_line_and_key(
    variant: str, line: int, problem: str, tmp_path: Path
) -> None:
    path = tmp_path / "harness.toml"
    path.write_text(f"[variants.main]\n{variant}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.message.startswith(f"{path}:{line}: {problem}")
    assert "\n" not in raised.value.message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('trails = 3\n[variants.main]\napp = "shop:app"\n', ":1: trails: unknown key"),
        (
            'trials = 0\n[variants.main]\napp = "shop:app"\n',
            ":1: trials: expected a whole number from 1 to 1,000, got 0",
        ),
        ('scenarios = ["checks"]\n[variants.main]\napp = "shop:app"\n', ":1: scenarios: no file or folder "),
        ("trials = 3\n", "variants: missing"),
        ('[variants."my build"]\napp = "shop:app"\n', "[variants] my build: a variant's name names its servers"),
        ("[variants.main\n", ":1: invalid TOML"),
    ],
)
def test_an_invalid_file_is_a_config_error_naming_the_file(text: str, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "harness.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.message.startswith(str(path)) and problem in raised.value.message


def test_the_users_scenarios_folder_is_known_by_name_beside_the_built_ins(tmp_path: Path) -> None:
    project(tmp_path)
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "orders.toml").write_text(GENERIC_SCENARIO)
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "extra.toml").write_text('[schedule]\nkind = "burst"\nrequests = 2\n')
    (tmp_path / "harness.toml").write_text('scenarios = ["more/extra.toml"]\n' + TWO_BUILDS)

    config = load_config(tmp_path / "harness.toml")

    assert config.scenario_paths == (tmp_path / "scenarios", tmp_path / "more" / "extra.toml")
    assert {"burst", "tutorial-tabs", "waves", "orders", "extra"} <= set(config.scenarios())
    assert config.scenario("orders").description == "orders at once"
    assert config.scenario(str(tmp_path / "more" / "extra.toml")).schedule.requests == 2


def test_a_run_that_chooses_no_scenario_takes_the_projects_one_and_the_built_in_configuration_takes_burst(
    tmp_path: Path,
) -> None:
    assert builtin_config().scenario().name == "burst"
    path = project(tmp_path, "[variants.old]\napp = 'shop:app'\n")
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "orders.toml").write_text(GENERIC_SCENARIO)

    assert load_config(path).scenario().name == "orders"

    # pyproject.toml's [tool.harness], its one scenario named by its scenarios key
    (tmp_path / "scenarios" / "orders.toml").rename(tmp_path / "orders.toml")
    pyproject = project(
        tmp_path,
        "[tool.harness]\nscenarios = ['orders.toml']\n[tool.harness.variants.old]\napp = 'shop:app'\n",
        name="pyproject.toml",
    )
    assert load_config(pyproject).scenario().name == "orders"


def test_a_run_that_chooses_no_scenario_of_several_or_of_none_stops_and_says_how_to_choose(tmp_path: Path) -> None:
    path = project(tmp_path, "[variants.old]\napp = 'shop:app'\n")

    with pytest.raises(ScenarioError) as raised:
        load_config(path).scenario()
    assert raised.value.message == (
        f"no scenario to run: {path} chooses none and has none of its own; write one into {tmp_path / 'scenarios'} "
        "(docs/scenarios.md), or name a file or a built-in one (harness list) with --scenario"
    )

    (tmp_path / "scenarios").mkdir()
    for number in range(14):
        (tmp_path / "scenarios" / f"s{number:02}.toml").write_text(GENERIC_SCENARIO)
    with pytest.raises(ScenarioError) as raised:
        load_config(path).scenario()
    listed = ", ".join(f"s{number:02}" for number in range(12))
    assert raised.value.message == (
        f"{path} has 14 scenarios and chooses none to run: {listed} and 2 more (harness list); choose one with "
        f'--scenario NAME or scenario = "NAME" in {path}'
    )
    assert load_config(path).scenario("s13").name == "s13"  # one chosen: no question


def test_expect_naming_an_undeclared_build_names_it_and_the_declared_builds(tmp_path: Path) -> None:
    path = project(tmp_path)
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "orders.toml").write_text(
        GENERIC_SCENARIO + '\n[expect]\nold = "clean"\nghost = "fails"\n'
    )
    config = load_config(path)

    with pytest.raises(ConfigError) as raised:
        config.scenario("orders")

    message = raised.value.message
    assert "scenario 'orders': [expect] names 'ghost'" in message
    assert f"which {path} does not declare (declared: old, new)" in message


def test_without_a_configuration_file_the_builds_are_the_tutorials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    config = load_config()

    assert isinstance(config, Config) and config.path is None
    assert list(config.variants) == ["unpatched", "patched", "recommended", "unpatched-pooled", "patched-pooled"]
    assert list(builtin_config().variants) == list(config.variants)
    assert [v.expect for v in config.variants.values()] == ["fails", "clean", "clean", "fails", "clean"]
    assert all(v.app.startswith("harness.app_variants.") and v.app_dir is None for v in config.variants.values())
    assert config.scenario_paths == () and config.settings == {}
    assert "tutorial" in config.origin
    with pytest.raises(ConfigError, match=r"unknown variant 'main'; .* declares: unpatched, patched, recommended"):
        config.get_variants(["main"])


def test_a_run_on_sqlite_leaves_out_the_builds_that_name_postgres_unless_they_are_named() -> None:
    config = builtin_config()

    def names(variants: list[Variant]) -> list[str]:
        return [v.name for v in variants]

    assert names(config.get_variants()) == ["unpatched", "patched", "recommended"]
    assert names(config.get_variants(database="postgres")) == list(config.variants)
    assert names(config.get_variants(["patched-pooled", "patched"])) == ["patched-pooled", "patched"]
    assert config.variants["patched-pooled"].database == "postgres" and config.variants["patched"].database is None


def test_database_and_database_url_are_settings_and_a_build_may_name_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "harness.toml"
    path.write_text(
        'database = "postgres"\n[variants.main]\napp = "shop:app"\n'
        '[variants.lite]\napp = "shop:app"\ndatabase = "sqlite"\nenv = { URL = "{database_url}" }\n'
    )
    monkeypatch.setenv("HARNESS_DATABASE_URL", "postgresql://shop:secret@127.0.0.1:5432/postgres")
    config = load_config(path)

    settings = resolve({}, config)

    assert settings["database"].value == "postgres" and settings["database"].source == "config file"
    assert settings["database_url"].source == "environment"
    assert resolve({"database": "sqlite"}, config)["database"].value == "sqlite"
    assert config.variants["lite"].database == "sqlite" and config.variants["lite"].env == {"URL": "{database_url}"}
    assert [v.name for v in config.get_variants(database="postgres")] == ["main"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('database = "mysql"\n[variants.main]\napp = "shop:app"\n', ":1: database: expected 'sqlite' or 'postgres'"),
        (
            '[variants.main]\napp = "shop:app"\ndatabase = "pg"\n',
            ":3: [variants.main] database: expected one of 'sqlite', 'postgres', got 'pg'",
        ),
    ],
)
def test_an_unknown_database_is_a_config_error(text: str, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "harness.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert problem in raised.value.message


def write_scenario(tmp_path: Path, text: str, name: str = "orders.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_seed_steps_and_the_request_of_a_generic_scenario(tmp_path: Path) -> None:
    scenario = load_scenario(str(write_scenario(tmp_path, GENERIC_SCENARIO)))

    assert (scenario.name, scenario.trials, scenario.request_timeout) == ("orders", 2, 1.5)
    assert scenario.fail_on == ("5xx", "timeout")
    assert isinstance(scenario.seed, tuple)
    customers, stock = scenario.seed
    assert (customers.method, customers.path, customers.repeat) == ("POST", "/customers/", 3)
    rendered = customers.render({"i": 2, "trial": 7})
    assert (rendered.path, rendered.json, rendered.headers) == (
        "/customers/",
        {"name": "customer 2", "tags": ["trial 7"], "2": 1},
        {},
    )
    assert (stock.method, stock.repeat, stock.json) == ("PUT", 1, None)
    rendered = stock.render({"i": 0, "trial": 4})
    assert (rendered.path, rendered.json, rendered.headers) == ("/stock/4", None, {"Authorization": "Bearer 4"})
    request = scenario.schedule.request
    assert (scenario.schedule.kind, scenario.schedule.requests, scenario.schedule.wave_size) == ("waves", 6, 3)
    assert request == HttpRequest(
        method="POST",
        path="/orders/{i}",
        json={"customer": "customer {i}", "trial": "{trial}"},
        headers={"X-Trial": "{trial}"},
    )
    rendered = request.render({"i": 5, "trial": 2})
    assert (rendered.path, rendered.json, rendered.headers) == (
        "/orders/5",
        {"customer": "customer 5", "trial": "2"},
        {"X-Trial": "2"},
    )


def test_a_scenario_without_fail_on_fails_on_5xx_only_and_repeated_kinds_count_once(tmp_path: Path) -> None:
    plain = load_scenario(str(write_scenario(tmp_path, '[schedule]\nkind = "burst"\nrequests = 2\n')))
    assert plain.fail_on == ("5xx",)
    text = 'fail_on = ["timeout", "5xx", "timeout", "transport-error"]\n[schedule]\nkind = "burst"\nrequests = 2\n'
    assert load_scenario(str(write_scenario(tmp_path, text))).fail_on == ("timeout", "5xx", "transport-error")


def test_a_leak_threshold_is_kept_through_the_scenarios_file_and_left_out_of_it_at_its_default(
    tmp_path: Path,
) -> None:
    text = 'fail_on = ["leak"]\nleak_threshold = 3\n[schedule]\nkind = "burst"\nrequests = 2\n'
    scenario = load_scenario(str(write_scenario(tmp_path, text)))
    assert (scenario.fail_on, scenario.leak_threshold) == (("leak",), 3)
    assert load_scenario(str(write_scenario(tmp_path, scenario_toml(scenario)))) == scenario
    plain = replace(scenario, leak_threshold=0)
    assert "leak_threshold" not in scenario_toml(plain)  # so the digest of a scenario without it stays as it was
    assert plain.digest() != scenario.digest()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[schedule]\nkind = "burst"\nrequests = 2\n[schedule.request]\npath = "/orders/{n}"\n',
            ":5: [schedule.request] path: unknown placeholder {n} in '/orders/{n}'; known: {i}, {trial}",
        ),
        (
            '[[seed]]\npath = "/customers/"\njson = { name = "{name}" }\n[schedule]\nkind = "burst"\nrequests = 2\n',
            ":3: [seed] json: unknown placeholder {name}",
        ),
        (
            '[[seed]]\npath = "customers"\n[schedule]\nkind = "burst"\nrequests = 2\n',
            ":2: [seed] path: must start with '/', got 'customers'",
        ),
        (
            'fail_on = ["5xx", "crash"]\n[schedule]\nkind = "burst"\nrequests = 2\n',
            ":1: fail_on: expected a list of '5xx', 'transport-error', 'timeout', 'leak', got 'crash'",
        ),
        ('fail_on = "5xx"\n[schedule]\nkind = "burst"\nrequests = 2\n', ":1: fail_on: expected a list of strings"),
        (
            'leak_threshold = 2\n[schedule]\nkind = "burst"\nrequests = 2\n',
            ":1: leak_threshold: counts only when fail_on has 'leak'",
        ),
        (
            'fail_on = ["leak"]\nleak_threshold = -1\n[schedule]\nkind = "burst"\nrequests = 2\n',
            ":2: leak_threshold: expected a whole number from 0 to 100,000, got -1",
        ),
        (
            '[schedule]\nkind = "burst"\nrequests = 2\n[schedule.request]\npath = "/a"\nrepeat = 2\n',
            ":6: [schedule.request] repeat: unknown key",
        ),
        (
            '[schedule]\nkind = "burst"\nrequests = 2\npath = "/a"\n[schedule.request]\npath = "/b"\n',
            ":4: [schedule] path: give the path in [schedule.request], or path alone, not both",
        ),
        (
            '[[seed]]\npath = "/a"\nmethod = "FETCH"\n[schedule]\nkind = "burst"\nrequests = 2\n',
            ":3: [seed] method: expected one of GET, POST",
        ),
    ],
)
def test_an_invalid_generic_scenario_names_file_line_and_key(text: str, problem: str, tmp_path: Path) -> None:
    path = write_scenario(tmp_path, text)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(str(path))
    assert raised.value.message.startswith(f"{path}{problem}")


def test_an_error_in_a_later_seed_step_names_that_steps_line(tmp_path: Path) -> None:
    text = '[[seed]]\npath = "/customers/"\n\n[[seed]]\npath = "/stock/{n}"\n[schedule]\nkind = "burst"\nrequests = 2\n'
    path = write_scenario(tmp_path, text)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(str(path))
    assert raised.value.message.startswith(f"{path}:5: [seed] path: unknown placeholder {{n}}")


def test_a_generic_scenario_round_trips_through_to_dict_and_its_toml(tmp_path: Path) -> None:
    scenario = load_scenario(str(write_scenario(tmp_path, GENERIC_SCENARIO + '\n[expect]\nold = "clean"\n')))

    assert Scenario.from_dict(scenario.to_dict()) == scenario
    copy = write_scenario(tmp_path, scenario_toml(scenario, comment="written back\nby the test"), "copy.toml")
    assert copy.read_text().startswith("# written back\n# by the test\n")
    assert load_scenario(str(copy)) == scenario  # its name comes from the file's own name key


@pytest.mark.parametrize("name", ["café", "٣", "\uff46ull", "naïve-build"])
def test_a_variant_name_that_cannot_go_in_a_header_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    # str.isalnum takes these; the name goes into each request's x-harness-request-id header, which is ASCII.
    config = tmp_path / "harness.toml"
    config.write_text(f'[variants."{name}"]\napp = "myapp:app"\n', encoding="utf-8")

    assert main(["run", "--config", str(config), "--out", str(tmp_path / "out")]) == ExitCode.USAGE_ERROR

    err = capsys.readouterr().err
    assert err.startswith(f"harness: error: {config}") and len(err.splitlines()) == 1
    assert "ASCII letters, digits, '.', '_' and '-' only" in err
    assert not (tmp_path / "out").exists()
