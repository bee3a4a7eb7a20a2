"""A user's own app under test, as a user runs it: their folder, their harness.toml, the installed harness.

The app is tests/harness/user_app/orders.py, copied into a temporary project folder
outside the repository with a harness.toml declaring its three builds (broken, fixed,
hangs); every command runs with that folder as its current folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import ExitCode
from harness.results import TRIALS_FILE
from tests.conftest import is_running
from tests.harness.runs import INSTALLED_HARNESS

USER_APP = Path(__file__).parent / "user_app"

ENV = 'env = { ORDERS_DB = "{tmp}/orders.json" }'
BUILDS = f"""\
scenario = "listing"
trials = 2

[variants.broken]
app = "orders:broken"
expect = "fails"
description = "one shared connection, no lock"
{ENV}
ready = "/health"

[variants.fixed]
app = "orders:fixed"
description = "a connection per request"
env = {{ ORDERS_DB = "{{tmp}}/orders-{{port}}-x{{time_scale}}.json" }}
ready = "/health"

[variants.hangs]
app = "orders:hangs"
expect = "fails"
description = "waits for a restock that never comes"
{ENV}
ready = "/health"
"""

LISTING = """\
description = "20 order listings at once"
request_timeout = 4  # 20 times what a listing takes: only a hang reaches it
fail_on = ["5xx", "timeout"]

[[seed]]
method = "POST"
path = "/orders/"
json = { item = "item {i}", trial = "{trial}" }
repeat = 3

[schedule]
kind = "burst"
requests = 20

[schedule.request]
path = "/orders/"
"""

REQUESTS = 20  # LISTING's schedule
SEEDED = 3  # LISTING's seed step


def user_project(folder: Path, builds: str = BUILDS, *, scenarios: str = "scenarios") -> Path:
    """``folder`` as a user's project: the app's source, harness.toml, and the listing scenario."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(USER_APP / "orders.py", folder / "orders.py")
    (folder / "harness.toml").write_text(builds)
    (folder / scenarios).mkdir(exist_ok=True)
    (folder / scenarios / "listing.toml").write_text(LISTING)
    return folder


def user_environment(**variables: str) -> dict[str, str]:
    """This environment without the developer's HARNESS_* settings or the running pytest's own variables."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("HARNESS_", "PYTEST_")) and name != "PYTHONPATH"
    }
    return {**kept, **variables}


def run(folder: Path, *command: str | Path, timeout: float = 120, **variables: str) -> subprocess.CompletedProcess[str]:
    """A command as the user types it in ``folder``."""
    return subprocess.run(
        [str(part) for part in command],
        cwd=folder,
        env=user_environment(**variables),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def harness(folder: Path, *args: str, timeout: float = 120, **variables: str) -> subprocess.CompletedProcess[str]:
    return run(folder, INSTALLED_HARNESS, *args, timeout=timeout, **variables)


def results_of(folder: Path, completed: subprocess.CompletedProcess[str]) -> tuple[Path, dict]:
    """The results file the run printed, which must be under the folder's harness-out, and its document.

    With its trials, as a user reads them: one JSON line each in trials.jsonl beside it.
    """
    [printed] = re.findall(r"^results: (.+)$", completed.stdout, flags=re.MULTILINE)
    path = folder / printed  # relative to the folder it ran in
    assert path.resolve().parent.parent == (folder / "harness-out").resolve()
    return path, {**json.loads(path.read_text()), "trials": _trial_lines(path)}


def _trial_lines(results: Path) -> list[dict]:
    return [json.loads(line) for line in results.with_name(TRIALS_FILE).read_text().splitlines()]


def error_lines(completed: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in completed.stderr.splitlines() if line.startswith("harness: error:")]


def assert_usage_error(completed: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit code 4 and one ``harness: error:`` line holding every fragment, never a traceback."""
    assert completed.returncode == ExitCode.USAGE_ERROR, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr + completed.stdout
    [line] = error_lines(completed)
    for fragment in fragments:
        assert fragment in line, line
    return line


@pytest.mark.e2e
@pytest.mark.slow
def test_a_users_three_builds_each_meet_their_expectation_and_each_failure_kind_is_counted_apart(
    tmp_path: Path,
) -> None:
    folder = user_project(tmp_path / "shop")

    completed = harness(folder, "run")  # scenario and trials from harness.toml

    assert completed.returncode == ExitCode.OK, completed.stdout + completed.stderr
    path, results = results_of(folder, completed)
    assert path.with_name("report.html").is_file()
    assert f"report:  {path.relative_to(folder).with_name('report.html')}" in completed.stdout
    assert results["exit_code"] == 0 and results["complete"] and results["url"] is None
    assert results["scenario"]["name"] == "listing" and results["scenario"]["fail_on"] == ["5xx", "timeout"]
    assert [(v["variant"], v["expected"], v["observed"], v["kind"]) for v in results["verdicts"]] == [
        ("broken", "fails", "fails", "met"),
        ("fixed", "clean", "clean", "met"),
        ("hangs", "fails", "fails", "met"),
    ]
    broken, fixed, hangs = results["summaries"]
    for summary in (broken, fixed, hangs):
        assert (summary["trials"], summary["requests"]) == (2, 2 * REQUESTS)
        assert (summary["seed_requests"], summary["seed_server_errors"], summary["error_trials"]) == (2 * SEEDED, 0, 0)
        assert summary["transport_errors"] == summary["interrupted"] == summary["client_errors"] == 0
    assert broken["server_errors"] > 0 and broken["timeouts"] == 0
    assert broken["ok"] + broken["server_errors"] == 2 * REQUESTS
    assert (hangs["timeouts"], hangs["server_errors"], hangs["ok"]) == (2 * REQUESTS, 0, 0)
    assert (fixed["ok"], fixed["server_errors"], fixed["timeouts"], fixed["failed_trials"]) == (2 * REQUESTS, 0, 0, 0)
    assert [(e["type"], e["message"]) for e in broken["exceptions"]] == [
        ("builtins.RuntimeError", "connection already in use by another request")
    ]

    out = completed.stdout
    assert re.search(rf"broken failed as expected: \d+ of {2 * REQUESTS} requests failed \(\d+ 5xx, 0 timeouts\)", out)
    assert (
        f"hangs failed as expected: {2 * REQUESTS} of {2 * REQUESTS} requests failed (0 5xx, {2 * REQUESTS} timeouts)"
        in out
    )
    assert "fixed was clean as expected" in out
    assert re.search(
        r"^  broken: \d+x builtins\.RuntimeError: connection already in use by another request$", out, re.M
    )
    assert "exit code 0: every variant met its expectation" in out
    assert "trial 1/2" in completed.stderr and "trial 2/2" in completed.stderr

    for trial in results["trials"]:
        # Each server had its own database under its own {tmp}, seeded through the API in its trial;
        # fixed's file name holds the {port} it listened on and the {time_scale}.
        name = f"orders-{trial['port']}-x1.0.json" if trial["variant"] == "fixed" else "orders.json"
        assert [p.name for p in (Path(trial["server_dir"]) / "tmp").iterdir()] == [name]
        orders = json.loads((Path(trial["server_dir"]) / "tmp" / name).read_text())
        assert orders == [{"id": n + 1, "item": f"item {n}", "trial": str(trial["trial"])} for n in range(SEEDED)]
        assert Path(trial["server_dir"]).is_relative_to((folder / "harness-out").resolve())
        assert trial["pid"] and not is_running(trial["pid"])


@pytest.mark.e2e
def test_a_scenarios_expect_turns_the_builds_verdicts_into_a_regression_and_a_silent_reproducer(
    tmp_path: Path,
) -> None:
    folder = user_project(tmp_path / "shop")
    flipped = LISTING + '\n[expect]\nbroken = "clean"\nfixed = "fails"\n'
    (folder / "scenarios" / "flipped.toml").write_text(flipped)

    completed = harness(
        folder, "run", "--scenario", "flipped", "--variant", "broken", "--variant", "fixed", "--trials", "1"
    )

    assert completed.returncode == ExitCode.REGRESSION, completed.stdout + completed.stderr
    _, results = results_of(folder, completed)
    assert [(v["variant"], v["expected"], v["observed"], v["kind"]) for v in results["verdicts"]] == [
        ("broken", "clean", "fails", "regression"),
        ("fixed", "fails", "clean", "silent"),
    ]
    assert results["exit_code"] == ExitCode.REGRESSION
    assert "exit code 1: regression" in completed.stdout


@pytest.mark.e2e
@pytest.mark.slow
def test_the_users_own_scenarios_and_reports_packages_never_stand_in_for_the_harnesss(tmp_path: Path) -> None:
    # python -m puts the current folder first on sys.path, where these packages are.
    folder = user_project(tmp_path / "shop", 'scenarios = ["checks"]\n' + BUILDS, scenarios="checks")
    tutorial = tmp_path / "tutorial"  # no harness.toml: the tutorial's built-in builds
    tutorial.mkdir()
    for where in (folder, tutorial):
        for package in ("scenarios", "reports", "app_variants"):
            (where / package).mkdir()
            (where / package / "__init__.py").write_text(f'raise ImportError("user\'s {package} imported")\n')

    runs = {
        "harness run": run(folder, sys.executable, "-m", "harness", "run", "--variant", "fixed", "--trials", "1"),
        "tutorial run": run(
            tutorial,
            sys.executable,
            "-m",
            "harness",
            "run",
            "--scenario",
            "tutorial-tabs",
            "--variant",
            "patched",
            "--trials",
            "1",
            "--time-scale",
            "0.02",
        ),
        # Not hangs: its requests wait out the scenario's request timeout, and it imports nothing the others do not.
        "pytest": run(
            folder,
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "listing",
            "--harness-trials",
            "1",
            "-k",
            "not hangs",
        ),
    }

    messages = [f"user's {package} imported" for package in ("scenarios", "reports", "app_variants")]
    for what, completed in runs.items():
        assert completed.returncode == 0, f"{what}:\n{completed.stdout}\n{completed.stderr}"
        assert not [m for m in messages if m in completed.stdout + completed.stderr], what
    assert "exit code 0: every variant met its expectation" in runs["harness run"].stdout
    assert "exit code 0: every variant met its expectation" in runs["tutorial run"].stdout
    assert "2 passed, 1 deselected" in runs["pytest"].stdout
    # The pytest items' servers ran in folders of their own, gone with them: their records came back in the reports.
    logs = [*folder.glob("harness-out/**/server.log"), *tutorial.glob("harness-out/**/server.log")]
    assert len(logs) == 1 + 1  # harness run, the tutorial's run
    for log in logs:
        assert not [m for m in messages if m in log.read_text()], log


@pytest.mark.e2e
@pytest.mark.slow
def test_pytest_from_another_folder_takes_the_builds_from_harness_config(tmp_path: Path) -> None:
    folder = user_project(tmp_path / "shop")
    elsewhere = tmp_path / "ci"
    elsewhere.mkdir()

    completed = run(
        elsewhere,
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        str(folder / "scenarios" / "listing.toml"),
        "--harness-config",
        str(folder / "harness.toml"),
        "--harness-trials",
        "1",
        "--junitxml",
        "junit.xml",
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "3 passed" in completed.stdout
    junit = (elsewhere / "junit.xml").read_text()
    assert all(f'name="listing[{build}]"' in junit for build in ("broken", "fixed", "hangs"))
    assert "unpatched" not in junit  # the tutorial's builds were not run


APP_THAT_DOES_NOT_IMPORT = "import orders_helpers_not_installed  # noqa\n"
UNKNOWN_KEY = BUILDS.replace('description = "a connection per request"', 'colour = "blue"')
UNKNOWN_PLACEHOLDER = BUILDS.replace(ENV, 'env = { ORDERS_DB = "{temp}/orders.json" }', 1)


def line_number(text: str, needle: str) -> int:
    """The line of ``text`` (from 1) that first holds ``needle``."""
    return next(number for number, line in enumerate(text.splitlines(), start=1) if needle in line)


@pytest.mark.parametrize(
    ("change", "args", "fragments"),
    [
        pytest.param(
            {
                "harness.toml": BUILDS.replace('app = "orders:fixed"', 'app = "missing_dependency:fixed"'),
                "missing_dependency.py": APP_THAT_DOES_NOT_IMPORT,
            },
            ["--variant", "fixed", "--trials", "1"],
            [
                "variant 'fixed': app 'missing_dependency:fixed' did not load: ModuleNotFoundError: "
                "No module named 'orders_helpers_not_installed'"
            ],
            marks=pytest.mark.e2e,
            id="app-does-not-import",
        ),
        pytest.param(
            {"scenarios/listing.toml": LISTING + '\n[expect]\nfixed = "clean"\nghost = "fails"\n'},
            [],
            ["scenario 'listing': [expect] names 'ghost'", "does not declare (declared: broken, fixed, hangs)"],
            id="expect-names-an-undeclared-build",
        ),
        pytest.param(
            {"harness.toml": BUILDS.replace('scenario = "listing"\n', ""), "scenarios/stock.toml": LISTING},
            [],
            [
                "harness.toml has 2 scenarios and chooses none to run: listing, stock; choose one with --scenario "
                'NAME or scenario = "NAME" in'
            ],
            id="several-scenarios-none-chosen",
        ),
        pytest.param(
            {"harness.toml": UNKNOWN_KEY},
            [],
            [
                f"harness.toml:{line_number(UNKNOWN_KEY, 'colour')}: [variants.fixed] colour: unknown key; "
                "expected one of: app, app_dir, database, description, env, env_file, expect, factory, python, ready"
            ],
            id="unknown-key",
        ),
        pytest.param(
            {"harness.toml": UNKNOWN_PLACEHOLDER},
            [],
            [
                f"harness.toml:{line_number(UNKNOWN_PLACEHOLDER, '{temp}')}: [variants.broken] env: unknown "
                "placeholder {temp} in '{temp}/orders.json'; known: {tmp}, {port}, {time_scale}"
            ],
            id="unknown-placeholder",
        ),
    ],
)
def test_bad_input_in_the_users_folder_is_one_error_line_and_exit_code_4(
    change: dict[str, str], args: list[str], fragments: list[str], tmp_path: Path
) -> None:
    folder = user_project(tmp_path / "shop")
    for name, text in change.items():
        (folder / name).write_text(text)

    completed = harness(folder, "run", *args, timeout=60)

    line = assert_usage_error(completed, *fragments)
    if "harness.toml:" in fragments[0]:
        assert line.startswith(f"harness: error: {folder / 'harness.toml'}:")
    if not args:  # a configuration or scenario error: refused before any run folder or server
        assert not (folder / "harness-out").exists()
        assert completed.stderr.count("\n") == 1
    for results in folder.glob("harness-out/*/results.json"):
        for trial in _trial_lines(results):
            assert not trial["pid"] or not is_running(trial["pid"])


@pytest.mark.e2e
def test_a_project_with_one_scenario_of_its_own_runs_it_when_it_chooses_none(tmp_path: Path) -> None:
    # Before, the built-in burst ran, and stopped on its [expect] naming the tutorial's builds.
    folder = user_project(tmp_path / "shop", BUILDS.replace('scenario = "listing"\n', ""))

    completed = harness(folder, "run", "--variant", "fixed", "--trials", "1")

    assert completed.returncode == ExitCode.OK, completed.stdout + completed.stderr
    assert results_of(folder, completed)[1]["scenario"]["name"] == "listing"
    assert "scenario listing: " in harness(folder, "config").stdout


@pytest.mark.e2e
@pytest.mark.slow
def test_a_ready_path_that_never_answers_2xx_is_an_error_showing_the_servers_last_lines(tmp_path: Path) -> None:
    folder = user_project(tmp_path / "shop")
    (folder / "harness.toml").write_text(BUILDS.replace('ready = "/health"', 'ready = "/ready-never"'))

    # Long enough for the server to start listening on a loaded machine; the ready path then answers 404 until it ends.
    completed = harness(folder, "run", "--variant", "fixed", "--trials", "1", "--start-timeout", "8", timeout=60)

    assert_usage_error(
        completed,
        "variant 'fixed': its ready path /ready-never did not answer 2xx within 8 s (last answer: HTTP 404)",
    )
    tail = completed.stderr.split("harness: error:", 1)[1]
    assert "--- last lines of its server's output ---" in tail
    assert '"GET /ready-never HTTP/1.1" 404' in tail
    [log] = folder.glob("harness-out/*/servers/fixed-trial1/server.log")
    assert "Finished server process" in log.read_text()  # stopped, not left running


def test_harness_init_writes_a_project_that_harness_config_loads_and_never_overwrites_it(tmp_path: Path) -> None:
    folder = tmp_path / "new-project"
    folder.mkdir()

    completed = harness(folder, "init", timeout=60)

    assert completed.returncode == 0, completed.stderr
    assert "wrote harness.toml" in completed.stdout and "wrote scenarios/concurrent.toml" in completed.stdout
    written = {path: path.read_bytes() for path in (folder / "harness.toml", folder / "scenarios" / "concurrent.toml")}
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "harness.toml",
        "scenarios",
        "scenarios/concurrent.toml",
    ]

    shown = harness(folder, "config", timeout=60)

    assert shown.returncode == 0, shown.stderr
    assert f"configuration: {folder / 'harness.toml'}" in shown.stdout
    assert f"  main: app myapp.main:app; expect clean; app_dir {folder}; " in shown.stdout
    assert "scenario concurrent: 50 requests at once on /items/" in shown.stdout
    assert re.search(r"^  scenario +concurrent +config file ", shown.stdout, flags=re.MULTILINE)

    again = harness(folder, "init", timeout=60)

    assert_usage_error(again, "harness init overwrites nothing", str(folder / "harness.toml"))
    assert {path: path.read_bytes() for path in written} == written


def test_harness_config_shows_where_a_setting_comes_from_file_then_environment_then_command_line(
    tmp_path: Path,
) -> None:
    folder = user_project(tmp_path / "shop")

    def trials_row(*args: str, **variables: str) -> list[str]:
        completed = harness(folder, "config", *args, timeout=60, **variables)
        assert completed.returncode == 0, completed.stderr
        [row] = [line.split(None, 2) for line in completed.stdout.splitlines() if line.split()[:1] == ["trials"]]
        return row

    assert trials_row() == ["trials", "2", f"config file ({folder / 'harness.toml'})"]
    assert trials_row(HARNESS_TRIALS="4") == ["trials", "4", "environment (HARNESS_TRIALS)"]
    assert trials_row("--trials", "6", HARNESS_TRIALS="4") == ["trials", "6", "command line"]

    bad = harness(folder, "config", timeout=60, HARNESS_TRIALS="lots")
    assert_usage_error(bad, "HARNESS_TRIALS='lots'")


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The fixed build under a uvicorn the user started themselves: its URL and its log. Always stopped after."""
    folder = user_project(tmp_path / "own")
    log_path = tmp_path / "own-uvicorn.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "orders:fixed", "--host", "127.0.0.1", "--port", "0"],
            cwd=folder,
            env=user_environment(ORDERS_DB=str(tmp_path / "own-orders.json")),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)", log_path.read_bytes())):
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "uvicorn did not start:\n" + log_path.read_text()
            time.sleep(0.02)
        yield f"http://127.0.0.1:{int(found.group(1))}", log_path
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert not is_running(server.pid)


@pytest.mark.e2e
def test_url_runs_the_scenario_against_a_server_the_user_started_and_says_what_it_could_not_see(
    own_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, log = own_server
    folder = user_project(tmp_path / "shop")

    completed = harness(folder, "run", "--url", url, "--variant", "fixed")

    assert completed.returncode == ExitCode.OK, completed.stdout + completed.stderr
    path, results = results_of(folder, completed)
    assert results["url"] == url and results["trace"] is False
    assert [(v["variant"], v["kind"]) for v in results["verdicts"]] == [("fixed", "met")]
    assert [(t["trial"], t["pid"], t["server_dir"]) for t in results["trials"]] == [(1, None, ""), (2, None, "")]
    assert not (path.parent / "servers").exists()  # nothing was launched
    assert f"the server at {url} as fixed" in completed.stderr
    assert log.read_text().count('"GET /orders/ HTTP/1.1" 200') == 2 * REQUESTS  # the run's traffic went there
    summary = completed.stdout.split("evidence this run could not collect:", 1)
    assert len(summary) == 2, completed.stdout
    assert f"{url} is a server the harness did not start" in summary[1]
    assert "every trial went to the same server" in summary[1]


@pytest.mark.e2e
def test_a_password_in_url_is_used_but_shown_and_stored_nowhere(own_server: tuple[str, Path], tmp_path: Path) -> None:
    url, log = own_server
    folder = user_project(tmp_path / "shop")
    with_password = url.replace("http://", "http://user:s3cret@")

    completed = harness(folder, "run", "--url", with_password, "--variant", "fixed", "--trials", "1")

    assert completed.returncode == ExitCode.OK, completed.stdout + completed.stderr
    path, results = results_of(folder, completed)
    masked = url.replace("http://", "http://user@")
    assert results["url"] == masked and f"the server at {masked} as fixed" in completed.stderr
    assert log.read_text().count('"GET /orders/ HTTP/1.1" 200') == REQUESTS  # the run went to the server
    written = {file.name: file.read_text() for file in path.parent.rglob("*") if file.is_file()}
    assert {"results.json", TRIALS_FILE, "report.html"} <= set(written)
    for name, text in {**written, "stdout": completed.stdout, "stderr": completed.stderr}.items():
        assert "s3cret" not in text, name


def test_url_on_another_machine_is_refused_without_allow_remote(tmp_path: Path) -> None:
    folder = user_project(tmp_path / "shop")

    completed = harness(folder, "run", "--url", "http://10.1.2.3:80", "--variant", "fixed", timeout=60)

    assert_usage_error(completed, "--url http://10.1.2.3:80 is not on this machine", "--allow-remote")
    assert not (folder / "harness-out").exists()  # refused before any run folder, and any request


def test_url_where_nothing_answers_is_a_usage_error_before_any_run(tmp_path: Path) -> None:
    folder = user_project(tmp_path / "shop")
    with socket.socket() as closed:  # a port that was free a moment ago, and that nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"

    completed = harness(folder, "run", "--url", url, "--variant", "fixed", timeout=60)

    assert_usage_error(completed, f"--url {url}: nothing answers there", "is the server up?")
    assert not (folder / "harness-out").exists()
