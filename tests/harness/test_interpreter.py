from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from harness.errors import ConfigError, ExitCode
from harness.interpreter import checked_interpreter, server_environment, server_path
from harness.results import read_results
from harness.stack import STACK_INSTALLER, stacks
from tests.conftest import kept_between_runs
from tests.harness import runs

# Imported in a server by the probe, the tracer, the explorer and the warm parent, and by the built-in apps' package.
SERVER_MODULES = (
    "harness.server.probe",
    "harness.server.tracer",
    "harness.server.explorer",
    "harness.server.choosers",
    "harness.server.forkserver",
    "harness.app_variants",
)


def test_the_server_path_holds_the_server_side_alone_and_it_imports_with_no_site_packages() -> None:
    assert sorted(entry.name for entry in (server_path() / "harness").iterdir()) == [
        "__init__.py",
        "app_variants",
        "server",
    ]
    # -S: no site-packages at all, so nothing of the harness's stack; the server side needs the standard library only.
    script = (
        f"import json, sys; [__import__(name) for name in {SERVER_MODULES!r}]; "
        "outside = {name.split('.')[0] for name in sys.modules} - set(sys.stdlib_module_names) - {'__main__'}; "
        "print(json.dumps(sorted(outside)))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", script],
        env=server_environment(os.environ),
        cwd=server_path(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == ["harness"]


def test_a_builds_own_pythonpath_comes_after_the_server_side_and_the_harnesss_own_is_dropped() -> None:
    environment = server_environment({"PYTHONPATH": "/the/harness/stack", "HOME": "/home/me"}, "/the/apps/lib")
    assert environment == {"HOME": "/home/me", "PYTHONPATH": f"{server_path()}{os.pathsep}/the/apps/lib"}


def test_the_harnesss_own_interpreter_passes_the_check_with_its_versions() -> None:
    interpreter = checked_interpreter(sys.executable, variant="own")
    record = interpreter.record()
    assert record["executable"] == sys.executable
    assert record["fastapi"] == metadata.version("fastapi") and record["uvicorn"] == metadata.version("uvicorn")
    assert interpreter.graceful_shutdown  # uvicorn 0.54 takes --timeout-graceful-shutdown
    assert record["stack"] in {*stacks(), "custom"}


def _script(folder: Path, text: str, mode: int = 0o755) -> str:
    path = folder / "python"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda folder: str(folder / "missing"), "no such file"),
        (lambda folder: str(folder), "not executable (or a folder)"),
        (lambda folder: _script(folder, "#!/bin/sh\n", 0o644), "not executable (or a folder)"),
        (lambda folder: _script(folder, "just text\n"), "cannot be run (Exec format error)"),
        (lambda folder: _script(folder, "#!/bin/sh\necho hello\n"), "not a Python the harness can use (exit code 0"),
        (
            lambda folder: _script(folder, "#!/bin/sh\necho 'No module named x' >&2\nexit 1\n"),
            "not a Python the harness can use (exit code 1: No module named x)",
        ),
        (lambda folder: _script(folder, "#!/bin/sh\nexec sleep 30\n"), "did not answer within 0.5 s (is it a Python?)"),
        (
            lambda folder: _script(
                folder, """#!/bin/sh\necho 'harness-interpreter: {"python": "3.8.10", "versions": {}}'\n"""
            ),
            "Python 3.8.10 is older than 3.11, the oldest the harness serves on",
        ),
        (
            lambda folder: _script(folder, """#!/bin/sh\necho 'harness-interpreter: {"python": 3, "failed": 1}'\n"""),
            "not a Python the harness can use (exit code 0: harness-interpreter:",
        ),
    ],
    ids=["missing", "folder", "not-executable", "not-a-program", "not-a-python", "fails", "hangs", "too-old", "odd"],
)
def test_an_interpreter_that_cannot_serve_a_build_is_a_config_error_in_one_line(
    make: object, problem: str, tmp_path: Path
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(ConfigError) as raised:
        checked_interpreter(path, variant="old", timeout=0.5 if "within" in problem else 30)
    assert raised.value.message.startswith(f"variant 'old': python = {path}: {problem}")
    assert "\n" not in raised.value.message


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv's Python with nothing installed: no FastAPI, no uvicorn."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return venv / "bin" / "python"


@pytest.mark.parametrize("command", [("run", "--scenario", "tutorial-tabs"), ("sweep",)], ids=["run", "sweep"])
def test_a_python_without_fastapi_stops_the_run_before_any_trial_with_exit_4(
    command: tuple[str, ...], bare_python: Path, tmp_path: Path
) -> None:
    (tmp_path / "harness.toml").write_text(
        '[variants.unpatched]\napp = "harness.app_variants.unpatched:app"\nexpect = "fails"\n'
        f'python = "{bare_python}"\n[variants.patched]\napp = "harness.app_variants.patched:app"\n'
    )
    run = runs.harness(*command, "--config", tmp_path / "harness.toml", "--out", tmp_path / "out")
    assert run.returncode == ExitCode.USAGE_ERROR
    assert run.stderr == (
        f"harness: error: variant 'unpatched': python = {bare_python}: cannot import fastapi "
        "(ModuleNotFoundError: No module named 'fastapi')\n"
    )
    assert not (tmp_path / "out").exists()  # not a trial, not even the run's folder


def _install_legacy_stack(venv: Path) -> None:
    """The legacy stack's pins in a new virtualenv, without the harness: what a project pinned to Pydantic 1 has."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    bundled = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import pip; print(pip.__version__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    if tuple(int(part) for part in bundled.stdout.split(".")[:2]) >= (24, 1):  # it refuses uvicorn 0.14's metadata
        subprocess.run([*pip, STACK_INSTALLER], check=True, timeout=300)
    stack = runs.REPO / "harness" / "stacks" / "legacy.txt"
    subprocess.run([*pip, "-r", str(stack)], check=True, timeout=600)


@pytest.fixture(scope="module")
def legacy_python(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a virtualenv on the legacy stack with no harness in it, made once and kept in pytest's cache.

    From PyPI through pip's cache: about 6 s with pip's cache warm, 50 s cold, on the project's 2-core machine.
    """
    inputs = (sys.version, sys.executable, STACK_INSTALLER, (runs.REPO / "harness/stacks/legacy.txt").read_text())
    venv = kept_between_runs(request.config, tmp_path_factory, "legacy-stack-alone", inputs, _install_legacy_stack)
    return venv / "bin" / "python"


@pytest.mark.e2e
@pytest.mark.slow
def test_the_tutorials_builds_on_a_legacy_interpreter_without_the_harness_fail_as_the_legacy_matrix_column(
    legacy_python: Path, tmp_path: Path
) -> None:
    alone = subprocess.run([str(legacy_python), "-c", "import harness"], capture_output=True, timeout=60, cwd=tmp_path)
    assert alone.returncode == 1, "the harness is installed in the legacy virtualenv"
    env = 'env = { APP_VARIANTS_DATABASE = "{database_url}", APP_VARIANTS_TIME_SCALE = "{time_scale}" }'
    (tmp_path / "harness.toml").write_text(
        f'[variants.unpatched]\napp = "harness.app_variants.unpatched:app"\nexpect = "fails"\n'
        f'python = "{legacy_python}"\n{env}\n'
        f'[variants.patched]\napp = "harness.app_variants.patched:app"\npython = "{legacy_python}"\n{env}\n'
    )

    run = runs.harness(
        "run", "--config", tmp_path / "harness.toml", "--scenario", "tutorial-tabs", "--trials", "3", "--out", tmp_path
    )

    # The legacy column of nox -s matrix (docs/measurements.md): tutorial-tabs fails unpatched in every trial.
    assert run.returncode == 0, run.stderr
    result = read_results(next(tmp_path.glob("*/results.json")))
    verdicts = {verdict.variant: verdict for verdict in result.verdicts}
    assert (verdicts["unpatched"].kind, verdicts["unpatched"].observed) == ("met", "fails")
    assert (verdicts["patched"].kind, verdicts["patched"].observed) == ("met", "clean")
    summary = {summary.variant: summary for summary in result.summaries}
    assert summary["unpatched"].failed_trials == 3
    assert [(e.type, e.message) for e in summary["unpatched"].exceptions] == [
        ("peewee.OperationalError", "Connection already opened.")
    ]
    assert summary["patched"].ok == summary["patched"].requests == 30  # users with their items, through Pydantic 1
    for name in ("unpatched", "patched"):
        record = result.interpreters[name]
        assert (record["executable"], record["stack"]) == (str(legacy_python), "legacy")
        assert (record["pydantic"], record["fastapi"], record["uvicorn"]) == ("1.10.27", "0.65.2", "0.14.0")
    assert result.environment["executable"] == sys.executable  # the harness itself ran on the current stack
    # Forked from a warm parent on the legacy interpreter, not started cold.
    assert not any("started cold" in log.read_text() for log in tmp_path.glob("*/servers/*/server.log"))
