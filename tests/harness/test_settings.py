"""The settings registry: each setting declared once, every source checked the same way, nothing heavy loaded."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import build_parser, main
from harness.config import load_config
from harness.errors import ConfigError, ExitCode, UsageError
from harness.plan import build_plan
from harness.settings import (
    RunSettings,
    SweepGrid,
    defaults,
    option,
    plugin_option,
    resolve,
    specs,
    variable,
)
from tests.harness.runs import REPO

NON_FINITE = ["nan", "inf", "-inf", "NaN", "Infinity", "1e999"]
# The network and database stack, and what renders: none of it is needed to print help, list or config.
HEAVY = ("anyio", "httpx", "httpcore", "psycopg2", "uvicorn", "fastapi", "starlette", "peewee", "pydantic", "jinja2")


def _numeric(kind: type[RunSettings] | type[SweepGrid] = RunSettings) -> list[str]:
    return [name for name, spec in specs(kind).items() if "number" in spec.read.accepts]


@pytest.mark.parametrize("name", _numeric())
@pytest.mark.parametrize("text", NON_FINITE)
def test_a_non_finite_number_is_refused_from_every_source_naming_it_and_the_range(
    name: str, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    accepts = specs()[name].read.accepts
    # The command line
    assert main(["config", f"{option(name)}={text}"]) == ExitCode.USAGE_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"harness: error: argument {option(name)}: expected {accepts}, got {text!r}")
    assert err.count("\n") == 1
    # A HARNESS_* variable
    monkeypatch.setenv(variable(name), text)
    with pytest.raises(ConfigError, match=rf"^{variable(name)}='{text}': expected ") as raised:
        resolve({}, load_config())
    assert accepts in raised.value.message
    monkeypatch.delenv(variable(name))
    # The configuration file: TOML's own nan and inf, on their line
    value = {"nan": "nan", "NaN": "nan", "inf": "inf", "Infinity": "inf", "-inf": "-inf", "1e999": "1e999"}[text]
    (tmp_path / "harness.toml").write_text(f'{name} = {value}\n[variants.main]\napp = "shop:app"\n')
    with pytest.raises(ConfigError, match=rf"harness\.toml:1: {name}: expected ") as raised:
        load_config()
    assert accepts in raised.value.message and "\n" not in raised.value.message


@pytest.mark.parametrize(
    ("name", "text", "accepts"),
    [
        ("trials", "10001", "a whole number from 1 to 1,000"),
        ("trials", "2.5", "a whole number from 1 to 1,000"),
        ("jobs", "65", "a whole number from 1 to 64"),
        ("time_scale", "0", "a number above 0 and at most 100"),
        ("time_scale", "101", "a number above 0 and at most 100"),
        ("request_timeout", "-1", "a number above 0 and at most 3,600"),
        ("max_seconds", "1e6", "a number above 0 and at most 86,400"),
        ("confidence", "1", "a number between 0 and 1"),
        ("confidence", "0", "a number between 0 and 1"),
        ("postgres_max_connections", "3", "a whole number from 4 to 10,000"),  # 3 are a superuser's alone
        ("postgres_max_connections", "10001", "a whole number from 4 to 10,000"),
        ("postgres_max_connections", "100.5", "a whole number from 4 to 10,000"),
    ],
)
def test_a_number_out_of_range_is_refused_with_the_range(
    name: str,
    text: str,
    accepts: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", option(name), text]) == ExitCode.USAGE_ERROR
    assert f"argument {option(name)}: expected {accepts}" in capsys.readouterr().err
    assert not (tmp_path / "harness-out").exists()


@pytest.mark.parametrize("name", _numeric(SweepGrid))
def test_the_sweeps_numbers_are_refused_the_same_way(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    flag = specs(SweepGrid)[name].flag or option(name)
    assert main(["sweep", flag, "nan"]) == ExitCode.USAGE_ERROR
    assert f"argument {flag}: expected {specs(SweepGrid)[name].read.accepts}, got 'nan'" in capsys.readouterr().err


def test_every_run_setting_is_an_option_a_variable_a_file_key_and_a_plugin_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester
) -> None:
    run_options = {action.dest: action.option_strings for action in _subparser("run")._actions}
    sweep_options = {action.dest for action in _subparser("sweep")._actions}
    plugin_help = pytester.runpytest("--help").stdout.str()
    for name, spec in specs().items():
        assert run_options[name] == [option(name)]
        assert name in sweep_options or "sweep" not in spec.commands
        assert (plugin_option(name) in plugin_help) == spec.plugin
    # Every key is taken from the file and from the environment, and the environment wins.
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    values = {"trials": 3, "time_scale": 0.5, "jobs": 1, "confidence": 0.9, "trace": False, "database": "postgres"}
    lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    (folder / "harness.toml").write_text("\n".join([*lines, "[variants.main]", 'app = "shop:app"', ""]))
    resolved = resolve({}, load_config())
    assert {key: resolved[key].value for key in values} == values
    assert {resolved[key].source for key in values} == {"config file"}
    monkeypatch.setenv(variable("trials"), "4")
    assert resolve({}, load_config())["trials"].value == 4


def test_a_setting_not_given_anywhere_takes_its_declared_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    resolved = resolve({}, load_config())
    assert {name: setting.value for name, setting in resolved.items()} == defaults()
    assert {setting.source for setting in resolved.values()} == {"built-in"}


def test_every_row_of_harness_config_says_what_the_docs_settings_table_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both are made from the registry, by two functions: they drifted before ("-" for max_trials, "True" for trace).
    hooks = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    assert hooks is not None and hooks.loader is not None
    docs = importlib.util.module_from_spec(hooks)
    hooks.loader.exec_module(docs)
    table = [line.strip("| ").split(" | ") for line in docs.settings_table().splitlines()[2:]]
    documented = {cells[0].strip("`"): cells[4] for cells in table}
    monkeypatch.chdir(tmp_path)
    for name in specs():
        monkeypatch.delenv(variable(name), raising=False)

    assert main(["config"]) == ExitCode.OK

    lines = capsys.readouterr().out.splitlines()
    start = lines.index(next(line for line in lines if line.split()[:1] == ["setting"]))
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[start + 1 : start + 1 + len(specs())]]
    shown = {key: value for key, value, source in rows if source == "built-in"}
    assert list(shown) == list(documented) == list(specs())
    for name, value in shown.items():
        assert value == documented[name] or value.endswith(f" ({documented[name]})"), name
    assert (shown["max_trials"], shown["max_seconds"], shown["trace"], shown["explore"]) == ("100", "600", "on", "off")


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["config"], ["run", "--help"], ["sweep", "--help"]])
def test_help_list_and_config_load_no_network_or_database_stack(argv: list[str], tmp_path: Path) -> None:
    probe = textwrap.dedent(
        f"""
        import contextlib, io, sys
        from harness.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main({argv!r})
            except SystemExit as exc:
                code = exc.code
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
        print(code, loaded)
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.stdout.split(" ", 1) == ["0", "[]\n"], done.stderr


def _subparser(command: str) -> object:
    parser = build_parser()
    [commands] = [action for action in parser._actions if action.dest == "command"]
    return commands.choices[command]  # type: ignore[attr-defined]


# -- a fuzzing pass: whatever a user passes in, one line and exit code 0 or 4, never a traceback -----------------

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
_ANY_NUMBER = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from([*NON_FINITE, "", " ", "0x10", "1_000", "١٢", "true"]),
)
_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(
    name=st.sampled_from(sorted(specs())),
    text=st.one_of(_TEXT, _ANY_NUMBER),
    via=st.sampled_from(["option", "variable"]),
)
def test_fuzzed_options_and_variables_end_in_one_line(
    name: str, text: str, via: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flag = option(name)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        if via == "variable":
            patch.setenv(variable(name), text)
            code = main(["config"])
        else:
            code = main(["config", flag] if flag.startswith("--no-") else ["config", f"{flag}={text}"])
    _assert_one_line_or_ok(code, capsys.readouterr().err)


_TOML_VALUE = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda x: "nan" if math.isnan(x) else repr(x).replace("inf", "inf")
    ),
    _TEXT.map(json.dumps),
    st.sampled_from(["true", "false", "[]", "[1, 2]", "{}", "{ a = 1 }", "1979-05-27", "nan", "+inf", "-inf"]),
)


@_FUZZ
@given(name=st.sampled_from(sorted(specs())), value=_TOML_VALUE)
def test_fuzzed_configuration_files_end_in_one_line(
    name: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "harness.toml").write_text(f'{name} = {value}\n[variants.main]\napp = "shop:app"\n')
    _assert_one_line_or_ok(main(["config"]), capsys.readouterr().err)


def _assert_one_line_or_ok(code: int, err: str) -> None:
    assert code in (ExitCode.OK, ExitCode.USAGE_ERROR), err
    if code == ExitCode.USAGE_ERROR:
        assert err.startswith("harness: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


@_FUZZ
@given(
    given_values=st.dictionaries(
        st.sampled_from(["host", "trials", "confidence", "max_trials", "time_scale", "scenario", "database"]),
        st.one_of(_TEXT, _ANY_NUMBER),
        max_size=4,
    )
)
def test_fuzzed_settings_build_a_plan_or_fail_in_one_line(given_values: dict[str, str], tmp_path: Path) -> None:
    """What harness run does with its settings before it starts anything: a plan, or one usage error."""
    config = load_config(folder=tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        for name, text in given_values.items():
            patch.setenv(variable(name), text)
        try:
            plan = build_plan(config, resolve({}, config), run_dir=tmp_path)
        except UsageError as exc:
            assert exc.message and "\n" not in exc.message
        else:
            assert plan.variants and math.isfinite(plan.scenario.time_scale) and plan.scenario.trials >= 1
