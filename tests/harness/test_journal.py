from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ExitCode
from harness.journal import RECOVERED, Journal, read_journal, recover
from harness.journal import _without_exceptions as _journalled
from harness.results import JOURNAL_FILE, RESULTS_FILE, TRIALS_FILE, read_results, write_results
from harness.runner import Recorder
from tests.harness import factories, runs
from tests.harness.factories import make_result, record


def test_the_last_line_of_a_request_wins_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    journal = Journal(path)
    sent, answered, other = record("patched", 1, 0, "interrupted"), record("patched", 1, 0), record("patched", 1, 1)
    for line in (sent, other, answered):
        journal.append(replace(line, exceptions=()))
    journal.close()
    with path.open("a") as torn:
        torn.write('{"variant": "patched", "trial": 1, "pha')  # the harness was killed mid-line

    assert read_journal(path) == [answered, other]


def test_the_recorder_journals_each_request_when_sent_when_answered_and_when_the_schedule_starts() -> None:
    lines = []
    recorder = Recorder(variant="patched", trial=1, on_change=lines.append)
    seed = recorder.begin(phase="seed", index=0, method="POST", path="/users/", planned_offset=None)
    recorder.finish(seed, status=200, outcome="ok")
    recorder.start_schedule()
    recorder.begin(phase="schedule", index=0, method="GET", path="/slowusers/", planned_offset=0.0)

    assert [(r.phase, r.outcome) for r in lines] == [
        ("seed", "interrupted"),
        ("seed", "ok"),
        ("seed", "ok"),  # again, with times from the schedule's start
        ("schedule", "interrupted"),
    ]
    assert lines[2] == recorder.records()[0] and lines[2].sent_at < 0


@pytest.mark.e2e
def test_a_harness_killed_outright_leaves_no_server_and_recover_rebuilds_its_last_trial(tmp_path: Path) -> None:
    with runs.running(tmp_path, *runs.REAL_PACE, *runs.TWO_BUILDS) as process:
        servers = runs.serving(tmp_path)
        pids = [runs.server_pid(directory) for directory in servers]
        time.sleep(1.5)  # seeded, and the first tabs are in flight
        process.kill()  # SIGKILL: the harness gets no chance to stop its servers or write
        process.wait()
        assert runs.wait_gone(pids, 5) < 5
    [run_dir] = [path.parent for path in tmp_path.glob("*/results.json")]
    assert read_results(run_dir / "results.json").trials == ()
    journalled = read_journal(run_dir / JOURNAL_FILE)
    assert {r.phase for r in journalled} == {"seed", "schedule"}

    completed = runs.harness("recover", run_dir, timeout=60)

    assert completed.returncode == ExitCode.OK, completed.stderr
    assert f"recovered {len(journalled)} request records of 2 unfinished trials" in completed.stdout
    assert "INCOMPLETE RUN" in completed.stdout
    result = read_results(run_dir / "results.json")
    assert not result.complete
    assert [(t.variant, t.trial, t.error) for t in result.trials] == [
        ("unpatched", 1, RECOVERED),
        ("patched", 1, RECOVERED),
    ]
    assert sorted(r.request_id for t in result.trials for r in t.records) == sorted(r.request_id for r in journalled)
    assert [s.interrupted for s in result.summaries] == [
        sum(1 for r in journalled if r.variant == v and r.phase == "schedule") for v in ("unpatched", "patched")
    ]


def test_recover_on_a_folder_without_a_run_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recover", str(tmp_path)]) == ExitCode.USAGE_ERROR
    assert f"harness: error: {tmp_path / 'results.json'}: cannot read results file" in capsys.readouterr().err


def test_recover_skips_journal_lines_of_another_shape_and_refuses_a_damaged_record_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unpatched, patched = factories.trial("unpatched", 1, ["server-error"]), factories.trial("patched", 1, ["ok"])
    write_results(make_result((unpatched, patched)), tmp_path / RESULTS_FILE)
    journal = Journal(tmp_path / JOURNAL_FILE)
    journal.append(record("unpatched", 2, 0, "server-error"))
    journal.close()
    with (tmp_path / JOURNAL_FILE).open("ab") as file:  # lines of another shape, not UTF-8, out of range, cut short
        file.write(b'{"variant": 7}\n{"variant": "caf\xe9"}\n[1]\n')
        line = json.dumps(_journalled(record("patched", 2, 0)))
        file.write(line.replace('"trial": 2', '"trial": 1e400').encode() + b"\n" + line[:30].encode())

    assert main(["recover", str(tmp_path)]) == ExitCode.OK
    assert "recovered 1 request records of 1 unfinished trials" in capsys.readouterr().out

    trials = tmp_path / TRIALS_FILE
    trials.write_text(trials.read_text().replace('"trial": 1', '"trial": "one"', 1))
    assert main(["recover", str(tmp_path)]) == ExitCode.USAGE_ERROR
    err = capsys.readouterr().err
    assert err == f"harness: error: {trials}: line 1 does not match schema 8: trial: expected an integer, got 'one'\n"

    (tmp_path / RESULTS_FILE).write_text('{"schema_version": 8, "variants": "unpatched"}')
    assert main(["recover", str(tmp_path)]) == ExitCode.USAGE_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"harness: error: {tmp_path / RESULTS_FILE}: results document does not match schema 8: ")
    assert len(err.splitlines()) == 1


def test_recover_leaves_a_complete_run_as_it_was(tmp_path: Path) -> None:
    result = replace(make_result(), complete=True)
    write_results(result, tmp_path / RESULTS_FILE)
    journal = Journal(tmp_path / JOURNAL_FILE)
    for trial in result.trials:
        for line in trial.records:
            journal.append(line)
    journal.close()

    assert recover(tmp_path) == (result, 0)


def test_recover_judges_at_the_runs_confidence_so_an_undecided_build_stays_undecided(tmp_path: Path) -> None:
    # One pair of trials: at 99% a clean build needs 7 pairs the reference failed and it did not.
    unpatched, patched = factories.trial("unpatched", 1, ["server-error"]), factories.trial("patched", 1, ["ok"])
    result = make_result((unpatched, patched), confidence=0.99)
    assert [v.kind for v in result.verdicts] == ["met", "undecided"]
    write_results(result, tmp_path / RESULTS_FILE)

    recovered, rebuilt = recover(tmp_path)

    assert rebuilt == 0 and recovered == result
    assert recovered.verdicts[1].kind == "undecided" and recovered.exit_code is ExitCode.UNDECIDED
