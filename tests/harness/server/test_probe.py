from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ExitCode
from tests.harness import runs
from tests.harness.runs import REPO


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("attribute", "factory", "expect", "problem"),
    [
        ("not_asgi", False, "fails", "it is an int (42), which cannot be called"),
        ("not_asgi", False, "clean", "it is an int (42), which cannot be called"),
        ("returns_not_asgi", True, "fails", "its factory returned a NoneType (None), which cannot be called"),
        ("not_asgi", True, "fails", "factory = true, but it is an int (42), not a function that returns the app"),
    ],
)
def test_a_build_whose_app_is_not_asgi_stops_the_run_with_a_usage_error_whatever_it_is_expected_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], attribute: str, factory: bool, expect: str, problem: str
) -> None:
    # A typo'd app = in a build expected to fail must not read as "failed as expected" and pass CI.
    config = tmp_path / "harness.toml"
    config.write_text(
        f'[variants.typo]\napp = "tests.harness.faulty_apps:{attribute}"\napp_dir = "{REPO}"\n'
        f'expect = "{expect}"\nfactory = {str(factory).lower()}\n'
    )
    scenario = tmp_path / "two.toml"
    scenario.write_text('trials = 2\n[schedule]\nkind = "burst"\nrequests = 2\n')

    code = main(["run", "--config", str(config), "--scenario", str(scenario), "--out", str(tmp_path)])

    err = capsys.readouterr().err.splitlines()
    assert code == ExitCode.USAGE_ERROR
    app = f"tests.harness.faulty_apps:{attribute}"
    assert err[-1] == f"harness: error: variant 'typo': app '{app}' is not an ASGI app: {problem}"
    assert not any(line.startswith("harness: error") for line in err[:-1])


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ('import sys\nsys.exit("DATABASE_URL is not set")\n', "exited as it loaded: DATABASE_URL is not set"),
        ("import sys\nsys.exit(0)\n", "exited as it loaded: sys.exit(0)"),
        ("raise SystemExit\n", "exited as it loaded: sys.exit()"),
        ("import os\nos._exit(1)\n", "ended its server's process as it loaded (os._exit, or a crash)"),
        ("raise KeyboardInterrupt\n", "raised KeyboardInterrupt as it loaded"),
    ],
)
def test_an_app_that_exits_as_it_loads_stops_the_run_before_any_trial_with_a_usage_error(
    tmp_path: Path, source: str, problem: str
) -> None:
    # None of these is an Exception: before, each server exited unexplained, every trial was a
    # harness error (exit 3) and the app's own message was only in the log's tail.
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "two.toml").write_text('trials = 2\n[schedule]\nkind = "burst"\nrequests = 2\n')
    (tmp_path / "app.py").write_text(source)
    (tmp_path / "harness.toml").write_text('[variants.main]\napp = "app:app"\n')

    completed = runs.harness("run", "--config", tmp_path / "harness.toml", "--out", tmp_path / "out", timeout=120)

    assert completed.returncode == ExitCode.USAGE_ERROR, completed.stderr
    assert completed.stderr.splitlines()[-1] == f"harness: error: variant 'main': app 'app:app' {problem}"
    assert "Traceback" not in completed.stderr
    assert "trial 1/" not in completed.stderr  # stopped at the first server, before any trial's report
