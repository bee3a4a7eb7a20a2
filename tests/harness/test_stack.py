from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.environment import describe_environment
from harness.results import read_results
from harness.stack import CUSTOM_STACK, STACK_INSTALLER, installed_stack, parse_stack, stacks
from tests.conftest import kept_between_runs
from tests.harness import runs

APP_PACKAGES = {"fastapi", "starlette", "pydantic", "peewee", "uvicorn"}


def test_the_shipped_stacks_pin_every_package_of_the_app_exactly() -> None:
    shipped = stacks()
    assert {"legacy", "current"} <= set(shipped)
    for stack in shipped.values():
        assert set(stack.pins) >= APP_PACKAGES, stack.name
        assert stack.description
    assert shipped["legacy"].pins["pydantic"].startswith("1.10.")
    assert shipped["legacy"].pins["fastapi"] == "0.65.2" and shipped["legacy"].pins["starlette"] == "0.14.2"
    assert shipped["current"].pins["pydantic"].startswith("2.")


def test_a_stack_file_holds_exact_pins_only() -> None:
    stack = parse_stack("mine", "# My stack.\n\nFastAPI==0.100.0\n# the client\npydantic_core==2.0\n")
    assert stack == parse_stack("mine", "# My stack.\nfastapi==0.100.0\npydantic-core==2.0\n")
    assert (stack.description, stack.pins) == ("My stack.", {"fastapi": "0.100.0", "pydantic-core": "2.0"})
    with pytest.raises(ValueError, match=r"line 2: expected name==version, got 'fastapi>=0.65'"):
        parse_stack("loose", "# Loose.\nfastapi>=0.65\n")


def test_the_installed_stack_is_the_one_whose_every_pin_is_installed() -> None:
    legacy = stacks()["legacy"].pins
    assert installed_stack({**legacy, "jinja2": "3.1.6"}.get) == "legacy"
    assert installed_stack({**legacy, "uvicorn": "0.15.0"}.get) == CUSTOM_STACK
    assert installed_stack({name: v for name, v in legacy.items() if name != "peewee"}.get) == CUSTOM_STACK


def test_every_run_records_the_stack_it_ran_on() -> None:
    environment = describe_environment()
    assert environment["stack"] == installed_stack() != ""


def test_a_run_in_an_xdist_worker_names_the_worker_beside_its_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    environment = describe_environment()
    assert environment["worker"] == "gw3" and environment["host"] and int(environment["cpus"]) >= 1
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert "worker" not in describe_environment()


def _with_stack(name: str) -> list[str]:
    return ["-e", str(runs.REPO), "-r", str(_stack_file(name))]


def _stack_file(name: str) -> Path:
    return runs.REPO / "harness" / "stacks" / f"{name}.txt"


def _install_legacy(venv: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([*_pip(venv), STACK_INSTALLER], check=True, timeout=300)
    subprocess.run([*_pip(venv), *_with_stack("legacy")], check=True, timeout=600)


def _pip(venv: Path) -> list[str]:
    return [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]


@pytest.fixture(scope="module")
def legacy_venv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with the pip that installs every stack and the harness on the legacy stack's pins.

    From PyPI through pip's cache, and kept in pytest's cache for the next run: making a
    virtualenv and its pip took longer than anything the tests then do with it. The
    harness is installed editable, so what it is made from is the interpreter, the
    repository's place, its pyproject.toml, the installer's pin and the stack's pins.
    """
    inputs = (
        sys.version,
        sys.executable,
        str(runs.REPO),
        (runs.REPO / "pyproject.toml").read_text(),
        STACK_INSTALLER,
        _stack_file("legacy").read_text(),
    )
    return kept_between_runs(request.config, tmp_path_factory, "legacy-venv", inputs, _install_legacy)


@pytest.mark.parametrize("name", sorted(stacks()))
@pytest.mark.slow
def test_every_stack_installs_with_the_harness_at_its_pins(name: str, legacy_venv: Path, tmp_path: Path) -> None:
    report = tmp_path / "install.json"
    # --ignore-installed: resolved as into an empty virtualenv, whatever the legacy stack put there.
    command = [*_pip(legacy_venv), "--dry-run", "--ignore-installed", "--report", str(report), *_with_stack(name)]
    subprocess.run(command, check=True, timeout=600)
    resolved = {
        package["metadata"]["name"].lower().replace("_", "-"): package["metadata"]["version"]
        for package in json.loads(report.read_text())["install"]
    }
    assert {package: resolved.get(package) for package in stacks()[name].pins} == stacks()[name].pins


@pytest.mark.e2e
@pytest.mark.slow
def test_on_the_legacy_stack_the_tutorials_recipe_fails_the_unpatched_build_and_not_the_patched(
    legacy_venv: Path, tmp_path: Path
) -> None:
    legacy_python = legacy_venv / "bin" / "python"
    # Pydantic 1 (orm_mode and the tutorial's PeeweeGetterDict), FastAPI 0.65, Peewee 3.14, uvicorn 0.14.
    versions = subprocess.run(
        [
            str(legacy_python),
            "-c",
            "import json, harness.environment as e; print(json.dumps(e.describe_environment()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(versions.stdout)["pydantic"].startswith("1.10.")

    run = runs.harness("run", "--scenario", "tutorial-tabs", "--trials", "3", "--out", tmp_path, python=legacy_python)

    assert run.returncode == 0, run.stderr
    result = read_results(next(tmp_path.glob("*/results.json")))
    assert result.environment["stack"] == "legacy"
    assert result.environment["executable"] == str(legacy_python)
    verdicts = {verdict.variant: verdict for verdict in result.verdicts}
    assert (verdicts["unpatched"].kind, verdicts["unpatched"].observed) == ("met", "fails")
    assert (verdicts["patched"].kind, verdicts["patched"].observed) == ("met", "clean")
    summary = {summary.variant: summary for summary in result.summaries}
    assert [(e.type, e.message) for e in summary["unpatched"].exceptions] == [
        ("peewee.OperationalError", "Connection already opened.")
    ]
    assert summary["patched"].ok == summary["patched"].requests == 30  # users with their items, through Pydantic 1
    # The server-side trace works on Starlette 0.14's executor too: every 5xx has a cause.
    failed = [r for t in result.trials for r in t.records if r.outcome == "server-error"]
    assert failed and all(t.trace for t in result.trials)
    assert all(r.diagnosis and r.diagnosis.kind in ("leaked-connection", "double-connect") for r in failed)
