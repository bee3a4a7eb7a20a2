from __future__ import annotations

import base64
import copy
import json
import os
import re
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from harness.summary import format_summary
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


def test_each_builds_own_interpreter_round_trips_and_a_file_written_before_it_reads_without(tmp_path: Path) -> None:
    legacy = {"executable": "/srv/legacy/bin/python", "python": "3.11.7", "pydantic": "1.10.27", "stack": "legacy"}
    result = replace(make_result(), interpreters={"unpatched": legacy})
    path = tmp_path / "results.json"
    write_results(result, path)
    assert read_results(path) == result
    older = json.loads(path.read_text())
    del older["interpreters"]  # as the harness wrote it before builds could have their own
    path.write_text(json.dumps(older))
    assert read_results(path) == replace(result, interpreters={})


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
    with pytest.raises(ResultsError, match=rf"{TRIALS_FILE}: line 1 does not match schema {SCHEMA_VERSION}: missing"):
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


# Any JSON value, and what json.dumps writes that JSON has not (NaN, Infinity), and integers beyond JSON's exact ones.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _places(value: object, at: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in a JSON document: the key or index of each value, at any depth."""
    children: list[tuple[str | int, object]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    return [place for key, child in children for place in [(*at, key), *_places(child, (*at, key))]]


def _damaged(document: dict[str, object], data: st.DataObject) -> dict[str, object]:
    """The document with one value deleted or replaced by another JSON value, a few times over."""
    document = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(1, 3))):
        *parent_keys, key = data.draw(st.sampled_from(_places(document)))
        parent: Any = document
        for step in parent_keys:
            parent = parent[step]
        if data.draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = data.draw(_JSON)
        if not _places(document):
            break
    return document


def _written_run(folder: Path) -> Path:
    trials = tuple(
        factories.trial(v, n, ["ok", "server-error", "timeout"]) for n in (1, 2) for v in ("unpatched", "patched")
    )
    path = folder / "results.json"
    write_results(make_result(trials, complete=True, confidence=0.9), path)
    return path


def _assert_read_or_results_error(path: Path) -> None:
    for read in (read_results, read_document):
        try:
            result = read(path)
        except ResultsError as exc:
            assert "\n" not in exc.message and str(path.parent) in exc.message
        else:
            assert isinstance(result, RunResult)
            format_summary(result)  # what was read is fit for use


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_results_file_is_read_or_refused_with_a_results_error(tmp_path: Path, data: st.DataObject) -> None:
    path = _written_run(tmp_path)
    document = json.loads(path.read_text())
    path.write_text(json.dumps(_damaged(document, data)))
    _assert_read_or_results_error(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_trials_file_is_read_or_refused_with_a_results_error(tmp_path: Path, data: st.DataObject) -> None:
    path = _written_run(tmp_path)
    trials = tmp_path / TRIALS_FILE
    lines = trials.read_text().splitlines()
    number = data.draw(st.integers(0, len(lines) - 1))
    lines[number] = json.dumps(_damaged(json.loads(lines[number]), data))
    trials.write_text("\n".join(lines) + "\n")
    _assert_read_or_results_error(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_results_file_cut_short_or_with_bytes_changed_is_read_or_refused(tmp_path: Path, data: st.DataObject) -> None:
    path = _written_run(tmp_path)
    target = data.draw(st.sampled_from([path, tmp_path / TRIALS_FILE]))
    content = bytearray(target.read_bytes())
    at = data.draw(st.integers(0, len(content) - 1))
    if data.draw(st.booleans()):
        del content[at:]
    else:
        content[at] = data.draw(st.integers(0, 255))  # 0x80 and above: not UTF-8 on its own
    target.write_bytes(bytes(content))
    _assert_read_or_results_error(path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"schema_version": 8, "duration": NaN}', "NaN is not a number JSON can hold"),
        ("[" * 100_000, "nested too deep"),
        (b'{"\xff": 1}', "not a JSON results file"),
        ('{"schema_version": 8, "trials": []}', "missing scenario"),
    ],
)
def test_what_json_cannot_hold_is_a_results_error_naming_the_file(
    tmp_path: Path, content: str | bytes, problem: str
) -> None:
    path = tmp_path / "results.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ResultsError, match=re.escape(str(path)) + ".*" + problem):
        read_results(path)


@pytest.mark.parametrize(
    ("place", "value", "problem"),
    [
        (("duration",), "1.5", "does not match schema 8: duration: expected a number, got '1.5'"),
        (("summaries", 0, "trials"), 10**20, "summaries[0].trials: 100000000000000000000 is out of range"),
        (("verdicts", 1, "kind"), "fine", "verdicts[1].kind: expected one of 'met'"),
        (("exit_code",), 9, "exit_code: 9 is not an exit code of the harness"),
        (("confidence",), 1, "confidence: expected a number between 0 and 1, e.g. 0.99, got 1"),
        (("verdicts", 0, "confidence"), 1.5, "verdicts[0].confidence: expected a number between 0 and 1"),
        (("variants",), ["unpatched"], "its summaries are of ['unpatched', 'patched'], its variants are ['unpatched']"),
    ],
)
def test_a_hand_edited_value_of_the_wrong_kind_is_named(
    tmp_path: Path, place: tuple[str | int, ...], value: object, problem: str
) -> None:
    path = _written_run(tmp_path)
    document = json.loads(path.read_text())
    *parents, key = place
    parent: Any = document
    for step in parents:
        parent = parent[step]
    parent[key] = value
    path.write_text(json.dumps(document))
    with pytest.raises(ResultsError, match=re.escape(f"{path}: ") + ".*" + re.escape(problem)):
        read_results(path)


def test_a_trials_file_cut_short_at_its_end_keeps_its_whole_lines_and_damage_before_it_is_refused(
    tmp_path: Path,
) -> None:
    path = _written_run(tmp_path)
    trials = tmp_path / TRIALS_FILE
    lines = trials.read_text().splitlines(keepends=True)
    trials.write_text("".join(lines[:-1]) + lines[-1][:20])  # a writer killed in its last line
    assert len(read_results(path).trials) == len(lines) - 1
    trials.write_text(lines[0][:20] + "\n" + "".join(lines[1:]))
    with pytest.raises(ResultsError, match=re.escape(f"{trials}: line 1 is not JSON")):
        read_results(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_results_file_is_a_results_error(tmp_path: Path) -> None:
    path = _written_run(tmp_path)
    path.chmod(0)
    with pytest.raises(ResultsError, match=r"results.json: cannot read results file: Permission denied"):
        read_results(path)


def test_a_folder_where_the_files_should_be_is_a_results_error(tmp_path: Path) -> None:
    (tmp_path / "results.json").mkdir()
    with pytest.raises(ResultsError, match=r"results.json: cannot read results file: Is a directory"):
        read_document(tmp_path / "results.json")
    (tmp_path / "run").mkdir()
    path = _written_run(tmp_path / "run")
    (path.parent / TRIALS_FILE).unlink()
    (path.parent / TRIALS_FILE).mkdir()
    with pytest.raises(ResultsError, match=re.escape(f"{path.parent / TRIALS_FILE}: cannot read it: Is a directory")):
        read_results(path)
