from __future__ import annotations

import http.server
import json
import re
import subprocess
import threading
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ExitCode
from harness.results import read_results, write_results
from tests.conftest import is_running
from tests.harness import hostile_app, runs
from tests.harness.factories import make_result, stack_run


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--scenario", "bursty"], "unknown scenario 'bursty'"),
        (
            ["run", "--variant", "sideways"],
            "unknown variant 'sideways'; the built-in configuration (the tutorial's builds) declares: "
            "unpatched, patched, recommended",
        ),
        (["run", "--trials", "0"], "argument --trials: expected a whole number from 1 to 1,000, got '0'"),
        (["run", "--trials", "many"], "argument --trials: expected a whole number from 1 to 1,000, got 'many'"),
        (["run", "--time-scale", "-1"], "argument --time-scale: expected a number above 0 and at most 100, got '-1'"),
        (["run", "--scenario", "missing.toml"], "cannot read scenario file missing.toml"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (
            ["run", "--host", "0.0.0.0"],
            "--host 0.0.0.0 would make the servers under test reachable from other machines",
        ),
        (
            ["run", "--request-timeout", "0"],
            "argument --request-timeout: expected a number above 0 and at most 3,600, got '0'",
        ),
        (["run", "--jobs", "0"], "argument --jobs: expected a whole number from 1 to 64, got '0'"),
        (["run", "--confidence", "1"], "argument --confidence: expected a number between 0 and 1, e.g. 0.99, got '1'"),
        (["run", "--max-trials", "50"], "--max-trials bounds a --confidence run; give --confidence too"),
        (["run", "--max-seconds", "60"], "--max-seconds bounds a --confidence run"),
        (["run", "--confidence", "0.9", "--trials", "3"], "--trials and --confidence exclude each other"),
        (["matrix", "nowhere"], "nowhere: no such folder"),
        (
            ["sweep", "--intervals", "0.5,fast"],
            "argument --intervals: expected numbers from 0 to 3,600, separated by commas, got '0.5,fast'",
        ),
        (["sweep", "--in-flight", "2,2"], "argument --in-flight: a value is repeated in '2,2'"),
        (
            ["sweep", "--in-flight", "0"],
            "argument --in-flight: expected whole numbers from 1 to 5,000, separated by commas, got '0'",
        ),
        (["sweep", "--confirm", "-1"], "argument --confirm: expected a whole number from 0 to 1,000, got '-1'"),
        (
            ["sweep", "--target", "1.5"],
            "argument --target: expected a number above 0 and at most 1, e.g. 0.99, got '1.5'",
        ),
        (["sweep", "--max-cells", "4"], "the grid has 15 cells (3 intervals x 5 in flight), more than --max-cells 4"),
        (["sweep", "--max-seconds", "10"], "the sweep is estimated at"),
        (["sweep", "--variant", "patched"], "a sweep looks for schedules that catch a build expected to fail"),
        (["sweep", "--write-scenario", "nowhere/x.toml"], "--write-scenario: no folder nowhere to write"),
    ],
)
def test_bad_input_ends_in_one_line_and_the_usage_exit_code(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == ExitCode.USAGE_ERROR
    err = capsys.readouterr().err
    assert err.startswith("harness: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "harness-out").exists()


def test_an_invalid_scenario_file_names_file_and_field(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("[schedule]\nkind = 'burst'\nrequests = -3\n")
    assert main(["run", "--scenario", str(path), "--out", str(tmp_path)]) == ExitCode.USAGE_ERROR
    assert f"{path}:3: [schedule] requests: expected a whole number from 1 to 5,000, got -3" in capsys.readouterr().err


def test_no_command_prints_help_and_usage_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == ExitCode.USAGE_ERROR
    assert "usage: harness" in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--scenario NAME|PATH" in out
    for code in ExitCode:
        assert f"  {code.value:<4} {code.meaning}" in out


def test_sweep_help_documents_its_options_defaults_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sweep", "--help"])
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for option in ("--intervals S,S,...", "--in-flight N,N,...", "--confirm N", "--write-scenario FILE"):
        assert option in out
    assert "(default: 0.25,0.5,1; numbers from 0 to 3,600" in out and "(default: 1,5,10,20,40; whole numbers" in out
    assert "Cost = requests per trial x planned seconds per trial" in out
    assert f"{ExitCode.INTERRUPTED.value} {ExitCode.INTERRUPTED.meaning}" in out


def test_list_names_every_scenario_and_variant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == ExitCode.OK
    out = capsys.readouterr().out
    for name in ("tutorial-tabs", "burst", "waves", "unpatched", "patched", "legacy", "current"):
        assert f"  {name} " in out


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("patched_failed", "code", "outcome"),
    [
        (0, ExitCode.OK, "no regression and no harness error; flagged: 1 silent reproducer"),
        (1, ExitCode.REGRESSION, ExitCode.REGRESSION.meaning),
    ],
)
def test_harness_matrix_prints_the_table_writes_the_page_and_fails_only_on_a_regression(
    patched_failed: int, code: ExitCode, outcome: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for stack, failed in (("legacy", 10), ("current", 0)):  # current: the reproducer went silent
        (tmp_path / stack / "run").mkdir(parents=True)
        run = stack_run(stack, failed=failed, patched_failed=patched_failed if stack == "legacy" else 0)
        write_results(run, tmp_path / stack / "run" / "results.json")
    output = tmp_path / "page" / "m.html"
    output.parent.mkdir()

    assert main(["matrix", str(tmp_path), "-o", str(output)]) == code

    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["scenario", "variant", "current", "legacy"]
    assert "0/10 0% (0%-28%) silent" in out
    assert f"matrix: {output}\nexit code {code.value}: {outcome}" in out
    assert '<a href="../current/run/report.html">report</a>' in output.read_text()


@pytest.mark.e2e
def test_harness_run_as_a_user_types_it(burst_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, completed = burst_run
    assert completed.returncode == 0, completed.stderr
    assert "trial 1/2" in completed.stderr and "trial 2/2" in completed.stderr
    assert "unpatched failed as expected" in completed.stdout
    assert "peewee.OperationalError: Connection already opened." in completed.stdout
    [results] = out.glob("*-burst/results.json")
    assert f"results: {results}" in completed.stdout
    assert json.loads(results.read_text())["exit_code"] == 0
    report = results.with_name("report.html")
    assert f"report:  {report}" in completed.stdout
    assert "Every variant did what was expected of it." in report.read_text()
    assert f'href="{results.parent.name}/report.html"' in (out / "index.html").read_text()


@pytest.mark.e2e
def test_a_disk_that_fills_up_ends_the_run_in_one_line_with_whole_records_that_recover_completes(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    full_disk = runs.file_size_limit(36_000)  # the journal or a trial's line fills it in trial 1; the app's files fit
    options = ("--scenario", "burst", "--variant", "patched", "--trials", "2")
    run = runs.start(out, *options, prelude=full_disk)
    _, err = run.communicate(timeout=120)

    assert run.returncode == ExitCode.HARNESS_ERROR, err
    [run_dir] = out.glob("*-burst")
    assert re.fullmatch(
        rf"harness: error: cannot write {re.escape(str(run_dir))}/\S+: File too large", err.splitlines()[-1]
    )
    assert f"once there is room, harness recover {run_dir} completes it" in err
    assert "Traceback" not in err
    _assert_whole_records(out)
    assert not read_results(run_dir / "results.json").complete

    still_full = runs.start(None, str(run_dir), command="recover", prelude=full_disk)
    _, err = still_full.communicate(timeout=60)
    assert still_full.returncode == ExitCode.HARNESS_ERROR, err
    assert len(err.splitlines()) == 1 and re.fullmatch(r"harness: error: cannot write \S+: File too large\n", err)
    _assert_whole_records(out)  # what it wrote before it failed (the record, not the report) is whole too
    read_results(run_dir / "results.json")

    recovered = runs.harness("recover", run_dir, timeout=60)
    assert recovered.returncode == ExitCode.OK, recovered.stderr
    result = read_results(run_dir / "results.json")
    assert result.trials and all(trial.records for trial in result.trials)  # what was measured, kept
    assert (run_dir / "report.html").is_file()


@pytest.mark.e2e
def test_a_folder_where_the_index_goes_is_a_harness_error_in_one_line_and_the_run_is_kept(tmp_path: Path) -> None:
    (tmp_path / "index.html").mkdir()
    run = runs.start(tmp_path, "--scenario", "burst", "--variant", "patched", "--trials", "1")
    _, err = run.communicate(timeout=120)

    assert run.returncode == ExitCode.HARNESS_ERROR, err
    assert err.splitlines()[-1] == f"harness: error: cannot write {tmp_path / 'index.html'}: Is a directory"
    assert "Traceback" not in err
    _assert_whole_records(tmp_path)
    [results] = tmp_path.glob("*-burst/results.json")
    assert read_results(results).complete and results.with_name("report.html").is_file()


@pytest.mark.e2e
@pytest.mark.parametrize("inodes", [8, 12], ids=["at-the-results", "at-a-servers-folder"])
def test_a_filesystem_that_runs_out_of_files_ends_the_run_in_one_line(tmp_path: Path, inodes: int) -> None:
    """A full disk for real: a tmpfs in a mount namespace of the test's own, holding at most ``inodes`` files."""
    options = ("--scenario", "burst", "--variant", "patched", "--trials", "3")
    completed = runs.on_a_full_filesystem(tmp_path, inodes, "run", "--out", str(tmp_path / "out"), *options)
    assert completed.returncode == ExitCode.HARNESS_ERROR, completed.stderr
    assert "Traceback" not in completed.stderr
    last = completed.stderr.splitlines()[-1]
    assert re.fullmatch(
        rf"harness: error: cannot write {re.escape(str(tmp_path))}/out/\S+: No space left on device", last
    )


def _assert_whole_records(out: Path) -> None:
    """No temporary file left, and every line of every JSON Lines file whole."""
    assert not list(out.rglob("*.partial"))
    for path in out.glob("*/*.jsonl"):
        text = path.read_text()
        assert not text or text.endswith("\n"), f"{path} ends in a cut-off line"
        for line in text.splitlines():
            json.loads(line)


def test_harness_report_renders_a_saved_results_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.json"
    write_results(make_result(), results)  # a run that was cut short
    output = tmp_path / "elsewhere" / "page.html"
    output.parent.mkdir()

    assert main(["report", str(results), "-o", str(output)]) == ExitCode.OK
    assert f"report: {output}" in capsys.readouterr().out
    assert "This run is incomplete" in output.read_text()
    assert main(["report", str(results)]) == ExitCode.OK
    assert results.with_name("report.html").is_file()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read results file"),
        ("{not json", "not a JSON results file"),
        ("[]", "not a JSON results file"),
        (b'{"schema_version": 8, "variants": ["caf\xe9"]}', "not a JSON results file"),
        ('{"schema_version": 8, "duration": Infinity}', "Infinity is not a number JSON can hold"),
        ("DIR", "Is a directory"),
        ("EDITED", "does not match schema 8: summaries[0].requests: expected an integer, got 'many'"),
    ],
)
def test_harness_report_on_a_bad_results_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None, message: str
) -> None:
    results = tmp_path / "results.json"
    if content == "DIR":
        results.mkdir()
    elif content == "EDITED":  # a real record, one count edited by hand
        write_results(make_result(), results)
        document = json.loads(results.read_text())
        document["summaries"][0]["requests"] = "many"
        results.write_text(json.dumps(document))
    elif content is not None:
        results.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["report", str(results)]) == ExitCode.USAGE_ERROR
    err = capsys.readouterr().err
    assert err.startswith("harness: error: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "report.html").exists()


@pytest.mark.e2e
def test_request_timeout_from_the_command_line_overrides_the_scenario(tmp_path: Path) -> None:
    # /slowusers/ at the tutorial's pace sleeps 9 s and 8 s: far past the 0.3 s asked for.
    path = tmp_path / "slow.toml"
    path.write_text('time_scale = 1\n[seed]\nusers = 1\nitems_per_user = 0\n[schedule]\nkind = "burst"\nrequests = 2\n')
    options = ["--scenario", str(path), "--variant", "patched", "--trials", "1", "--request-timeout", "0.3"]

    process = runs.start(tmp_path / "out", *options)
    out, err = process.communicate(timeout=60)

    assert process.returncode == ExitCode.REGRESSION, err
    [results] = (tmp_path / "out").glob("*/results.json")
    result = read_results(results)
    assert result.scenario.request_timeout == 0.3
    scheduled = [r for r in result.trials[0].records if r.phase == "schedule"]
    assert [(r.outcome, r.status) for r in scheduled] == [("timeout", None), ("timeout", None)]
    assert all(r.completed_at is not None and 0.3 <= r.completed_at - r.sent_at < 2 for r in scheduled)
    assert "2 of 2 requests got no answer (0 transport errors and 2 timeouts, counted apart)" in out


@pytest.mark.e2e
def test_two_runs_at_once_share_no_port_database_or_output_file(tmp_path: Path) -> None:
    processes = [runs.start(tmp_path, "--scenario", "burst", "--trials", "1", *runs.TWO_BUILDS) for _ in range(2)]
    outputs = [process.communicate(timeout=180) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], [err for _, err in outputs]
    printed = [line.removeprefix("results: ") for out, _ in outputs for line in out.splitlines() if "results: " in line]
    assert len(set(printed)) == 2 and sorted(printed) == sorted(map(str, tmp_path.glob("*/results.json")))
    trials = [(Path(path).parent, trial) for path in printed for trial in read_results(Path(path)).trials]
    assert len(trials) == 4
    assert len({trial.server_dir for _, trial in trials}) == 4
    for run_dir, trial in trials:
        server_dir = Path(trial.server_dir)
        assert server_dir.parent.parent == run_dir and (server_dir / "tmp" / "app.sqlite3").is_file()
        log = (server_dir / "server.log").read_text()
        # The port and pid are this server's own, and it answered this run's requests and no others.
        assert f"Uvicorn running on http://127.0.0.1:{trial.port} " in log
        assert f"Started server process [{trial.pid}]" in log
        assert log.count(' HTTP/1.1" ') == sum(1 for r in trial.records if r.status is not None) > 100


@pytest.mark.e2e
@pytest.mark.slow
def test_confidence_stops_burst_as_soon_as_both_verdicts_are_decided(tmp_path: Path) -> None:
    options = ("--scenario", "burst", *runs.TWO_BUILDS, "--confidence", "0.9", "--max-trials", "40", "--jobs", "2")
    completed = runs.harness("run", *options, "--out", tmp_path)
    assert completed.returncode == ExitCode.OK, completed.stdout + completed.stderr
    [path] = tmp_path.glob("*-burst/results.json")
    result = read_results(path)
    trials = len(result.trials) // 2
    # Every unpatched burst trial fails on this stack; 0.9 then takes 4 pairs of trials in which
    # unpatched failed and patched did not (2 rounds of 2); an unpatched trial without a 5xx would take more.
    assert 4 <= trials < 40
    assert (result.confidence, result.jobs) == (0.9, 2)
    unpatched, patched = result.verdicts
    assert unpatched.kind == patched.kind == "met"
    assert patched.power is not None and patched.power.trials == trials and patched.power.favourable_pairs >= 4
    assert f"decided clean at 90% confidence: in {patched.power.favourable_pairs} pairs of trials" in patched.reason
    assert "held to 90% confidence: every verdict decided" in completed.stdout
    assert f"trial {trials} (at most 40)" in completed.stderr
    # The round after the last was started ahead, then found not needed: its servers are gone, folders too.
    folders = sorted(p.name for p in path.parent.glob("servers/*"))
    assert folders == sorted(f"{v}-trial{n}" for n in range(1, trials + 1) for v in ("unpatched", "patched"))
    assert not [t.pid for t in result.trials if t.pid and is_running(t.pid)]


@pytest.mark.e2e
@pytest.mark.parametrize(("limit", "trials"), [(["--max-trials", "2"], 2), (["--max-seconds", "0.1"], 1)])
def test_confidence_without_a_reference_ends_undecided_at_its_limit(
    tmp_path: Path, limit: list[str], trials: int
) -> None:
    command = ["run", "--scenario", "burst", "--variant", "patched", "--confidence", "0.9", *limit]
    completed = runs.harness(*command, "--out", tmp_path)
    assert completed.returncode == ExitCode.UNDECIDED, completed.stdout + completed.stderr
    assert "held to 90% confidence: not decided within the limits: patched" in completed.stdout
    assert "exit code 5: undecided" in completed.stdout
    [path] = tmp_path.glob("*-burst/results.json")
    assert len(read_results(path).trials) == trials


def hostile_run(tmp_path: Path, **builds: tuple[str, str]) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``harness run``, one trial, of builds of tests/harness/hostile_app.py: name = (where, which message)."""
    config = tmp_path / "harness.toml"
    config.write_text(
        "".join(
            f'[variants.{name}]\napp = "tests.harness.hostile_app:app"\napp_dir = "{runs.REPO}"\nexpect = "fails"\n'
            f'env = {{ HOSTILE_AT = "{at}", HOSTILE_MESSAGE = "{message}" }}\n'
            for name, (at, message) in builds.items()
        )
    )
    scenario = tmp_path / "hostile.toml"
    scenario.write_text(hostile_app.SCENARIO)
    out = tmp_path / "out"
    completed = runs.harness("run", "--config", config, "--scenario", scenario, "--trials", "1", "--out", out)
    assert "Traceback" not in completed.stdout + completed.stderr
    [run_dir] = [path for path in out.glob("*") if path.is_dir()] or [out]
    return completed, run_dir


@pytest.mark.e2e
def test_an_apps_50_mb_exception_and_log_line_stay_out_of_the_records_report_and_terminal(tmp_path: Path) -> None:
    completed, run_dir = hostile_run(tmp_path, raises=("request", "huge"), prints=("startup", "huge"))

    assert (
        "raises: 2x builtins.RuntimeError: yyy" in completed.stdout
        and "(cut: 49,998,000 characters)" in completed.stdout
    )
    assert "[cut: the log's first " in completed.stdout  # the tail of the server that printed 50 MB and failed
    assert len(completed.stdout) + len(completed.stderr) < 50_000
    sizes = {path.name: path.stat().st_size for path in run_dir.iterdir() if path.is_file()}
    assert sizes["trials.jsonl"] < 100_000 and sizes["results.json"] < 100_000, sizes
    assert sizes["report.html"] < 2_000_000, sizes
    assert (run_dir / "servers" / "prints-trial1" / "server.log").stat().st_size > 50_000_000  # it did print it


@pytest.mark.e2e
def test_escape_sequences_in_an_apps_text_reach_neither_the_terminal_nor_the_report_raw(tmp_path: Path) -> None:
    completed, run_dir = hostile_run(tmp_path, raises=("request", "escapes"), prints=("startup", "escapes"))

    shown = completed.stdout + completed.stderr
    assert "\x1b" not in shown and "\x9b" not in shown and "\r" not in shown and "\x07" not in shown
    assert r"raises: 2x builtins.RuntimeError: \x1b[2J\x1b]0;pwned\x07 hidden\rshown \x9b31m" in completed.stdout
    assert (
        "\n" + r"\x1b[2J\x1b]0;pwned\x07 hidden" + "\n" in completed.stdout
    )  # the log tail of the server that printed it
    assert r"\u001b[2J" in (run_dir / "trials.jsonl").read_text()  # the records keep the app's text as it was
    report = (run_dir / "report.html").read_text()
    assert "\x1b" not in report and r"\x1b[2J\x1b]0;pwned\x07" in report


@pytest.mark.e2e
@pytest.mark.parametrize("message", ["escapes", "huge"])
def test_an_import_error_with_a_hostile_message_is_one_bounded_safe_error_line(tmp_path: Path, message: str) -> None:
    completed, _ = hostile_run(tmp_path, broken=("import", message))

    assert completed.returncode == ExitCode.USAGE_ERROR
    [line] = [line for line in completed.stderr.splitlines() if line.startswith("harness: error:")]
    assert line.startswith("harness: error: variant 'broken': app 'tests.harness.hostile_app:app' did not load: ")
    assert "\x1b" not in completed.stderr and len(completed.stderr) < 20_000


@pytest.mark.e2e
@pytest.mark.parametrize(("build", "trials"), [("app", 2), pytest.param("stubborn", 1, marks=pytest.mark.slow)])
def test_no_process_an_app_started_outlives_the_run(tmp_path: Path, build: str, trials: int) -> None:
    # stubborn's servers ignore SIGTERM: they and their children are killed at the stop timeout (5 s a trial).
    config = tmp_path / "harness.toml"
    config.write_text(
        f'[variants.spawning]\napp = "tests.harness.spawning_app:{build}"\napp_dir = "{runs.REPO}"\n'
        'env = { SPAWNING_PIDS = "{tmp}/children" }\n'
    )
    scenario = tmp_path / "spawning.toml"
    scenario.write_text(hostile_app.SCENARIO)

    completed = runs.harness(
        "run", "--config", config, "--scenario", scenario, "--trials", str(trials), "--out", tmp_path
    )

    assert completed.returncode == ExitCode.OK, completed.stderr
    children = [int(pid) for found in tmp_path.glob("*/servers/*/tmp/children") for pid in found.read_text().split()]
    assert len(children) == trials * 3  # three processes a trial
    runs.wait_gone(children, 5)


def test_a_variant_named_for_a_server_of_ones_own_must_be_ascii(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A server that answers (501 to everything), so that the name is what is refused.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code = main(["run", "--url", url, "--variant", "café", "--out", str(tmp_path)])
    finally:
        server.shutdown()
        server.server_close()
    assert code == ExitCode.USAGE_ERROR
    assert capsys.readouterr().err == "harness: error: --variant 'café': ASCII letters, digits, '.', '_' and '-' only\n"


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # not on the stderr the test reads
