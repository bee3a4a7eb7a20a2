from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ExitCode, ResultsError
from harness.matrix import build_matrix, collect_matrix, describe_cell, format_matrix
from harness.results import RunResult, write_results
from harness.stack import installed_stack
from tests.harness import runs
from tests.harness.factories import stack_run

LEGACY_RUN = Path("legacy/run/results.json")
CURRENT_RUN = Path("current/run/results.json")


def test_rows_are_scenario_and_variant_columns_the_stacks_each_cell_its_runs_verdict() -> None:
    matrix = build_matrix(
        [
            (LEGACY_RUN, stack_run("legacy", failed=10)),
            (CURRENT_RUN, stack_run("current", failed=0)),
            (Path("b"), stack_run("legacy", failed=5, trials=5, scenario="burst")),
            (Path("c"), stack_run("current", failed=5, trials=5, scenario="burst")),
        ]
    )
    assert matrix.stacks == ("current", "legacy")  # the shipped stacks, in the order harness.stack lists them
    assert [(row.scenario, row.variant) for row in matrix.rows] == [
        ("burst", "unpatched"),
        ("burst", "patched"),
        ("tutorial-tabs", "unpatched"),
        ("tutorial-tabs", "patched"),
    ]
    tabs = matrix.rows[2].cells
    assert tabs["current"].silent and tabs["current"].weakened_against is None  # silent says more
    assert not tabs["legacy"].silent
    assert (tabs["legacy"].trial_failure_rate.count, tabs["legacy"].results_path) == (10, LEGACY_RUN)
    assert all(
        cell.verdict.kind == "met" for row in matrix.rows if row.variant == "patched" for cell in row.cells.values()
    )
    assert matrix.exit_code is ExitCode.OK  # a silent reproducer is what a matrix shows, not a failure of it


def test_a_reproducer_that_fails_significantly_less_often_on_a_stack_is_weakened_there() -> None:
    matrix = build_matrix([(LEGACY_RUN, stack_run("legacy", failed=10)), (CURRENT_RUN, stack_run("current", failed=2))])
    unpatched = matrix.rows[0].cells
    # 2 of 10 (95% CI 6%-51%) against 10 of 10 (72%-100%): the intervals do not overlap.
    assert unpatched["current"].verdict.kind == "met" and unpatched["current"].weakened_against == "legacy"
    assert unpatched["legacy"].weakened_against is None
    assert describe_cell(unpatched["current"]) == "2/10 20% (6%-51%) met, weakened (vs legacy)"


def test_a_drop_within_the_noise_is_not_weakened() -> None:
    matrix = build_matrix([(LEGACY_RUN, stack_run("legacy", failed=10)), (CURRENT_RUN, stack_run("current", failed=6))])
    assert matrix.rows[0].cells["current"].weakened_against is None  # 6 of 10 is 31%-83%: overlaps 72%-100%


def test_the_newest_run_of_a_scenario_on_a_stack_fills_its_cell() -> None:
    older = stack_run("legacy", failed=10, started_at="2026-11-20T00:00:00.000+00:00")
    newer = stack_run("legacy", failed=4, started_at="2026-11-21T00:00:00.000+00:00")
    matrix = build_matrix([(Path("new"), newer), (Path("old"), older)])
    assert matrix.rows[0].cells["legacy"].trial_failure_rate.count == 4


def test_a_run_that_records_no_known_stack_gets_a_column_of_its_own_after_the_shipped_ones() -> None:
    matrix = build_matrix([(Path("a"), stack_run(None, failed=3)), (LEGACY_RUN, stack_run("legacy", failed=10))])
    assert matrix.stacks == ("legacy", "custom")
    assert "not run" not in format_matrix(matrix)


def test_a_regression_of_the_clean_build_on_any_stack_fails_the_matrix() -> None:
    matrix = build_matrix([(LEGACY_RUN, stack_run("legacy", failed=10, patched_failed=1))])
    assert matrix.rows[1].cells["legacy"].verdict.kind == "regression"
    assert matrix.exit_code is ExitCode.REGRESSION


def test_format_matrix_prints_a_row_per_scenario_and_variant_and_marks_missing_cells() -> None:
    matrix = build_matrix(
        [
            (LEGACY_RUN, stack_run("legacy", failed=10)),
            (CURRENT_RUN, stack_run("current", failed=0)),
            (Path("b"), stack_run("legacy", failed=5, trials=5, scenario="burst")),
        ]
    )
    lines = format_matrix(matrix).splitlines()
    assert lines[0].split() == ["scenario", "variant", "current", "legacy"]
    assert lines[1].split()[:4] == ["burst", "unpatched", "not", "run"]
    assert "0/10 0% (0%-28%) silent" in lines[3] and "10/10 100% (72%-100%) met" in lines[3]


def test_collect_matrix_reads_results_at_any_depth_and_lists_what_it_could_not_read(tmp_path: Path) -> None:
    (tmp_path / "legacy" / "run").mkdir(parents=True)
    write_results(stack_run("legacy", failed=10), tmp_path / "legacy" / "run" / "results.json")
    (tmp_path / "current" / "broken").mkdir(parents=True)
    (tmp_path / "current" / "broken" / "results.json").write_text("{not json")

    matrix = collect_matrix(tmp_path)

    assert matrix.stacks == ("legacy",)
    assert matrix.rows[0].cells["legacy"].results_path == tmp_path / "legacy" / "run" / "results.json"
    assert len(matrix.unreadable) == 1 and "not a JSON results file" in matrix.unreadable[0]


@pytest.mark.parametrize(("folder", "problem"), [("missing", "no such folder"), ("", "no readable results.json")])
def test_collect_matrix_without_any_results_is_a_usage_error(tmp_path: Path, folder: str, problem: str) -> None:
    with pytest.raises(ResultsError, match=problem) as raised:
        collect_matrix(tmp_path / folder)
    assert raised.value.exit_code is ExitCode.USAGE_ERROR


def test_builds_on_postgresql_get_a_column_of_their_own_beside_their_stack() -> None:
    on_postgres = stack_run("current", failed=2)
    on_postgres = replace(on_postgres, databases=dict.fromkeys(on_postgres.variants, "postgres"))
    matrix = build_matrix(
        [
            (CURRENT_RUN, stack_run("current", failed=10)),
            (Path("pg"), on_postgres),
            (LEGACY_RUN, stack_run("legacy", failed=10)),
        ]
    )
    assert matrix.stacks == ("current", "legacy", "current on postgres")
    unpatched = matrix.rows[0].cells
    assert unpatched["current on postgres"].results_path == Path("pg")
    assert unpatched["current on postgres"].weakened_against == "current"  # 2 of 10 against 10 of 10


def test_a_build_with_its_own_interpreter_goes_to_the_column_of_that_interpreters_stack() -> None:
    # The harness ran on the current stack; the builds' servers ran under a legacy virtualenv's Python (python =).
    own = stack_run("current", failed=10)
    legacy = {"executable": "/srv/legacy/bin/python", "python": "3.11.7", "pydantic": "1.10.27", "stack": "legacy"}
    own = replace(own, interpreters=dict.fromkeys(own.variants, legacy))
    matrix = build_matrix([(LEGACY_RUN, own), (CURRENT_RUN, stack_run("current", failed=2))])
    assert matrix.stacks == ("current", "legacy")
    assert matrix.rows[0].cells["legacy"].results_path == LEGACY_RUN
    assert matrix.environments["legacy"]["executable"] == "/srv/legacy/bin/python"
    assert matrix.environments["legacy"]["pydantic"] == "1.10.27"


def on_host(result: RunResult, host: str, cpus: int = 2) -> RunResult:
    return replace(result, environment={**result.environment, "host": host, "cpus": str(cpus)})


def test_runs_from_several_machines_get_a_column_each_with_its_machine() -> None:
    matrix = build_matrix(
        [
            (Path("job-1/results.json"), on_host(stack_run("current", failed=10), "runner-1", cpus=4)),
            (Path("job-2/results.json"), on_host(stack_run("current", failed=3), "runner-2")),
            (Path("job-3/results.json"), on_host(stack_run("legacy", failed=10), "runner-3")),
        ]
    )
    assert matrix.stacks == ("current @ runner-1", "current @ runner-2", "legacy @ runner-3")
    assert matrix.environments["current @ runner-1"]["cpus"] == "4"
    unpatched = matrix.rows[0].cells
    assert unpatched["current @ runner-2"].weakened_against == "current @ runner-1"  # 3 of 10 against 10 of 10


def test_runs_of_one_scenario_name_with_different_definitions_are_refused_naming_both_files() -> None:
    mine = stack_run("current", failed=10)
    other = replace(mine, scenario=replace(mine.scenario, time_scale=mine.scenario.time_scale * 2))
    more_trials = replace(mine, scenario=replace(mine.scenario, trials=50))

    with pytest.raises(ResultsError) as raised:
        build_matrix([(Path("a/results.json"), mine), (Path("b/results.json"), other)])

    message = raised.value.message
    assert (
        f"scenario 'tutorial-tabs' is not the same in a/results.json (definition {mine.scenario.digest()})" in message
    )
    assert f"and in b/results.json (definition {other.scenario.digest()})" in message
    build_matrix([(Path("a/results.json"), mine), (Path("c/results.json"), more_trials)])  # trials may differ


@pytest.mark.e2e
@pytest.mark.slow
def test_harness_matrix_merges_the_results_of_two_machines_and_refuses_two_definitions(tmp_path: Path) -> None:
    burst = ("run", "--scenario", "burst", "--trials", "1", *runs.TWO_BUILDS)
    # Another machine, as far as a run can tell: a UTS namespace of its own, with its own host name.
    other = subprocess.run(
        ["unshare", "--uts", "sh", "-c", 'hostname runner-2 && exec "$0" -m harness "$@"', sys.executable, *burst,
         "--out", str(tmp_path / "job-2" / "harness-out")],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert other.returncode == ExitCode.OK, other.stderr
    assert runs.harness(*burst, "--out", tmp_path / "job-1" / "harness-out").returncode == ExitCode.OK

    merged = runs.harness("matrix", tmp_path)

    assert merged.returncode == ExitCode.OK, merged.stderr
    stack = installed_stack()
    assert sorted(collect_matrix(tmp_path).stacks) == sorted(
        [f"{stack} @ runner-2", f"{stack} @ {socket.gethostname()}"]
    )
    assert f"{stack} @ runner-2" in merged.stdout.splitlines()[0]
    page = (tmp_path / "matrix.html").read_text()
    assert "runner-2" in page and f"<td>{os.cpu_count()}</td>" in page

    slower = runs.harness(*burst, "--time-scale", "0.1", "--out", tmp_path / "job-3" / "harness-out")
    assert slower.returncode == ExitCode.OK, slower.stderr
    refused = runs.harness("matrix", tmp_path)
    assert refused.returncode == ExitCode.USAGE_ERROR
    assert refused.stderr.startswith("harness: error: scenario 'burst' is not the same in ")


def test_harness_matrix_skips_each_damaged_file_saying_which_and_refuses_a_folder_of_nothing_but(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "legacy" / "results.json"
    good.parent.mkdir()
    write_results(stack_run("legacy", failed=10), good)
    damaged = {
        "cut": good.read_bytes()[:100],
        "nan": good.read_bytes().replace(b'"duration": 1.5', b'"duration": NaN'),
        "latin-1": good.read_bytes().replace(b'"python"', b'"pyth\xf6n"'),
        "edited": good.read_bytes().replace(b'"kind": "met"', b'"kind": "fine"', 1),
    }
    for name, content in damaged.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_bytes(content)
    (tmp_path / "folder" / "results.json").mkdir(parents=True)

    assert main(["matrix", str(tmp_path), "-o", str(tmp_path / "matrix.html")]) == ExitCode.OK
    err = capsys.readouterr().err.splitlines()
    for name in [*damaged, "folder"]:
        assert sum(line.startswith(f"not read: {tmp_path / name / 'results.json'}") for line in err) == 1, name

    good.unlink()
    assert main(["matrix", str(tmp_path), "-o", str(tmp_path / "matrix.html")]) == ExitCode.USAGE_ERROR
    err = capsys.readouterr().err
    assert err == f"harness: error: {tmp_path}: no readable results.json in it or below it (run 'nox -s matrix')\n"
