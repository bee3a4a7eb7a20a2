from __future__ import annotations

import base64
import json
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import ResultsError
from harness.results import (
    SCHEMA_VERSION,
    SWEEP_FILE,
    TRIALS_FILE,
    Diagnosis,
    RunResult,
    TraceEvent,
    pack_record,
    pack_trial,
    read_document,
    read_results,
    read_sweep,
    unpack_record,
    unpack_trial,
    write_results,
)
from tests.harness import factories
from tests.harness.factories import cell, make_result, make_sweep

CAUSE = Diagnosis(kind="double-connect", text="connect() on a thread that held #2", threads=(1, 4), requests=("a", "b"))


def test_results_round_trip_through_json(tmp_path: Path) -> None:
    result = make_result()
    path = tmp_path / "results.json"
    write_results(result, path)
    summary = json.loads(path.read_text())
    assert summary["schema_version"] == SCHEMA_VERSION and "trials" not in summary
    assert len((tmp_path / TRIALS_FILE).read_text().splitlines()) == len(result.trials)
    assert read_results(path) == result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", TRIALS_FILE]


def test_a_packed_trial_comes_back_whole_with_each_text_written_once() -> None:
    failed = [replace(r, diagnosis=CAUSE) for r in factories.trial("unpatched", 3, ["server-error"] * 3).records]
    trace = (
        TraceEvent(kind="connect", request_id=failed[0].request_id, thread=1, time=0.25, phase="enter", connection=2),
        TraceEvent(kind="phase", request_id=failed[0].request_id, thread=1, time=0.5, phase="enter", start=0.25),
        TraceEvent(kind="query", request_id=None, thread=0, time=-0.125, sql="SELECT user", error="boom", auto=True),
    )
    trial = replace(factories.trial("unpatched", 3, []), records=tuple(failed), trace=trace, trace_truncated=True)

    line = json.loads(json.dumps(pack_trial(trial)))

    assert unpack_trial(line) == trial
    assert line["texts"].count(factories.CONNECTION_OPENED.traceback) == 1
    assert line["texts"].count(failed[0].request_id) == 1  # named by a record and two trace events
    # A row leaves out its trailing defaults: a phase event has no connection, error, auto or sql.
    assert len(line["trace"][1]) == line["columns"]["TraceEvent"].index("start") + 1


def test_a_results_file_without_its_trials_file_is_a_results_error(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_results(make_result(), path)
    (tmp_path / TRIALS_FILE).unlink()
    with pytest.raises(ResultsError, match=rf"{TRIALS_FILE} is missing: the run's trials are there, beside results"):
        read_results(path)
    assert read_results(path, with_trials=False).trials_run == make_result().trials_run


def test_a_trials_file_of_another_shape_is_a_results_error(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_results(make_result(), path)
    (tmp_path / TRIALS_FILE).write_text('{"variant": "unpatched", "records": [[1, 2]]}\n')
    with pytest.raises(ResultsError, match=rf"{TRIALS_FILE} does not match schema {SCHEMA_VERSION}"):
        read_results(path)


def test_a_packed_record_is_one_line_of_ascii_smaller_than_its_files_that_gives_the_run_back(tmp_path: Path) -> None:
    trials = tuple(factories.trial(v, n, ["ok", "server-error"] * 20) for n in (1, 2) for v in ("unpatched", "patched"))
    result = replace(make_result(trials, complete=True), hosts={"unpatched": "ci-7 (gw1)", "patched": "ci-7 (gw1)"})
    path = tmp_path / "results.json"
    write_results(result, path)

    text = pack_record(path)

    assert text.isascii() and text.isprintable()
    assert len(text) < (path.stat().st_size + (tmp_path / TRIALS_FILE).stat().st_size) / 4
    assert unpack_record(text) == result


def test_a_record_packed_before_any_trial_ended_comes_back_without_trials(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_results(make_result(), path)
    (tmp_path / TRIALS_FILE).unlink()  # a run killed while its first trial ran
    assert unpack_record(pack_record(path)).trials == ()


@pytest.mark.parametrize(
    "text",
    ["", "not base64!", base64.b64encode(b"not zlib").decode(), base64.b64encode(zlib.compress(b"[]")).decode()],
)
def test_what_is_not_a_packed_record_is_a_results_error(text: str) -> None:
    with pytest.raises(ResultsError, match="not a packed run record"):
        unpack_record(text)


@pytest.mark.parametrize("version", [1, 4])  # 4: the last with its trials inside results.json
def test_a_file_of_an_older_schema_is_refused_with_what_to_do(tmp_path: Path, version: int) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**make_result().to_dict(), "schema_version": version}, default=list))
    refused = rf"version {version} was written by an older harness.*run the scenario again"
    with pytest.raises(ResultsError, match=refused):
        read_results(path)


def test_the_statistics_survive_the_round_trip(tmp_path: Path) -> None:
    result = make_result()
    path = tmp_path / "results.json"
    write_results(result, path)
    unpatched, _ = read_results(path).summaries
    assert (unpatched.trial_failure_rate.count, unpatched.trial_failure_rate.total) == (1, 1)
    assert unpatched.request_failure_rate.estimate == pytest.approx(1 / 3)
    power = read_results(path).verdicts[1].power
    assert power is not None and power.reference == ("unpatched",) and power.at_estimate == 1.0


def test_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**make_result().to_dict(), "schema_version": 99}, default=list))
    with pytest.raises(ResultsError, match="schema version 99"):
        read_results(path)


@pytest.mark.parametrize(("content", "message"), [("{not json", "not a JSON results file"), ("[]", "not a JSON")])
def test_bad_files_are_results_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(ResultsError, match=message):
        read_results(path)
    with pytest.raises(ResultsError, match="cannot read"):
        read_results(tmp_path / "absent.json")


def test_a_document_missing_fields_is_a_results_error() -> None:
    data = make_result().to_dict()
    del data["trials"]
    with pytest.raises(ResultsError, match="does not match schema"):
        RunResult.from_dict(data)


def test_a_document_with_a_broken_scenario_is_a_results_error() -> None:
    data = make_result().to_dict()
    data["scenario"]["trials"] = 0
    with pytest.raises(ResultsError, match=rf"does not match schema {SCHEMA_VERSION}: scenario: trials"):
        RunResult.from_dict(data)


def test_a_sweep_round_trips_in_the_same_schema_and_is_told_apart_from_a_run(tmp_path: Path) -> None:
    sweep = make_sweep(
        (cell(1, 0.5, failed=0), cell(10, 0.5, failed=10), cell(10, 0.5, failed=50, trials=50, stage="confirm"))
    )
    path = tmp_path / SWEEP_FILE
    write_results(sweep, path)
    data = json.loads(path.read_text())
    assert (data["schema_version"], data["document"]) == (SCHEMA_VERSION, "sweep")
    assert read_sweep(path) == sweep == read_document(path)
    assert sweep.winner is not None and read_sweep(path).winner == sweep.winner
    with pytest.raises(ResultsError, match=r"results file of a sweep \(harness sweep\), not of a run"):
        read_results(path)
    run = tmp_path / "results.json"
    write_results(make_result(), run)
    assert read_document(run) == make_result()
    with pytest.raises(ResultsError, match=r"results file of a run \(harness run\), not of a sweep"):
        read_sweep(run)
