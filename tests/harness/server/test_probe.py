from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ExitCode
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
