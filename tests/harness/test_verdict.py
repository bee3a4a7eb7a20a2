from __future__ import annotations

from dataclasses import replace

from harness.errors import ExitCode
from harness.results import Verdict
from harness.verdict import decide, exit_code, summarise
from tests.harness.factories import record, trial


def test_summary_counts_schedule_requests_and_keeps_seed_apart() -> None:
    first = trial("unpatched", 1, ["ok", "server-error", "server-error", "transport-error", "timeout"])
    seed = record("unpatched", 2, 0, "server-error", phase="seed")
    second = trial("unpatched", 2, ["ok", "ok", "interrupted", "client-error"])
    second = replace(second, records=(seed, *second.records))
    other = trial("patched", 1, ["server-error"])

    summary = summarise("unpatched", [first, second, other])

    assert (summary.trials, summary.failed_trials, summary.first_failed_trial) == (2, 1, 1)
    assert (summary.requests, summary.ok, summary.server_errors) == (9, 3, 2)
    assert (summary.transport_errors, summary.timeouts, summary.interrupted, summary.client_errors) == (1, 1, 1, 1)
    assert (summary.seed_requests, summary.seed_server_errors) == (1, 1)
    [group] = summary.exceptions
    assert (group.type, group.message, group.count) == ("peewee.OperationalError", "Connection already opened.", 3)
    assert group.first_request_id == "unpatched-t1-schedule-1"


def test_expected_failure_that_fails_is_met_and_names_the_exception() -> None:
    verdict = decide(summarise("unpatched", [trial("unpatched", 1, ["ok", "server-error"])]), "fails")
    assert (verdict.observed, verdict.kind) == ("fails", "met")
    assert "1 of 2 requests returned 5xx, in 1 of 1 trials (100%)" in verdict.reason
    assert "OperationalError: Connection already opened." in verdict.reason


def test_expected_failure_that_stays_clean_is_a_silent_reproducer_with_the_trial_count() -> None:
    trials = [trial("unpatched", n, ["ok", "ok"]) for n in (1, 2, 3)]
    verdict = decide(summarise("unpatched", trials), "fails")
    assert (verdict.observed, verdict.kind) == ("clean", "silent")
    assert "no request of its 3 trials returned a 5xx" in verdict.reason and "went silent" in verdict.reason


def test_expected_clean_that_fails_is_a_regression() -> None:
    verdict = decide(summarise("patched", [trial("patched", 1, ["server-error"])]), "clean")
    assert verdict.kind == "regression"


def test_requests_without_an_answer_keep_a_variant_from_being_clean() -> None:
    summary = summarise("patched", [trial("patched", 1, ["ok", "transport-error", "timeout"])])
    verdict = decide(summary, "clean")
    assert (verdict.observed, verdict.kind) == ("degraded", "regression")
    assert "2 of 3 requests got no answer (1 transport errors and 1 timeouts, counted apart)" in verdict.reason


def test_timeouts_alone_are_not_the_reproducer_reproducing() -> None:
    verdict = decide(summarise("unpatched", [trial("unpatched", 1, ["ok", "timeout"])]), "fails")
    assert (verdict.observed, verdict.kind) == ("degraded", "silent")
    assert "0 transport errors and 1 timeouts, counted apart" in verdict.reason


def test_a_trial_that_could_not_run_makes_the_verdict_an_error() -> None:
    trials = [trial("patched", 1, ["ok"]), trial("patched", 2, [], error="did not start")]
    verdict = decide(summarise("patched", trials), "clean")
    assert (verdict.observed, verdict.kind) == ("error", "error")


def _verdict(kind: str) -> Verdict:
    return Verdict(variant=kind, expected="clean", observed="clean", kind=kind, reason="")  # type: ignore[arg-type]


def test_exit_code_priority_is_regression_then_error_then_silent() -> None:
    assert exit_code([_verdict("met"), _verdict("met")]) is ExitCode.OK
    assert exit_code([_verdict("silent"), _verdict("met")]) is ExitCode.SILENT
    assert exit_code([_verdict("silent"), _verdict("error")]) is ExitCode.HARNESS_ERROR
    assert exit_code([_verdict("error"), _verdict("regression"), _verdict("silent")]) is ExitCode.REGRESSION


def test_a_reproducer_that_misses_some_trials_says_so() -> None:
    trials = [trial("unpatched", 1, ["ok", "server-error"]), trial("unpatched", 2, ["ok", "ok"])]
    verdict = decide(summarise("unpatched", trials), "fails")
    assert verdict.kind == "met"
    assert "in 1 of 2 trials (50%)" in verdict.reason
    assert "1 of 2 trials saw no failure at all" in verdict.reason


def test_a_variant_with_no_trial_at_all_is_an_error_not_a_crash() -> None:
    verdict = decide(summarise("patched", []), "clean")
    assert (verdict.kind, verdict.reason) == ("error", "patched: no trial was run")
