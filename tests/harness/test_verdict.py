from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import ExitCode
from harness.journal import recover
from harness.plan import RunPlan
from harness.plugin import merge_results
from harness.results import (
    RESULTS_FILE,
    Outcome,
    RunResult,
    ServerException,
    TrialResult,
    Verdict,
    read_results,
    write_results,
)
from harness.scenario import FailureKind, load_scenario
from harness.variant import Expectation, Variant
from harness.verdict import decide, exit_code, judge, judged_plan, judged_run, summarise, trial_outcomes
from tests.harness import runs
from tests.harness.factories import CONNECTION_OPENED, record, trial


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
    assert exit_code([_verdict("undecided"), _verdict("met")]) is ExitCode.UNDECIDED
    assert exit_code([_verdict("undecided"), _verdict("silent")]) is ExitCode.SILENT


def test_a_reproducer_that_misses_some_trials_says_so() -> None:
    trials = [trial("unpatched", 1, ["ok", "server-error"]), trial("unpatched", 2, ["ok", "ok"])]
    verdict = decide(summarise("unpatched", trials), "fails")
    assert verdict.kind == "met"
    assert "in 1 of 2 trials (50%)" in verdict.reason
    assert "1 of 2 trials saw no failure at all" in verdict.reason


def test_a_variant_with_no_trial_at_all_is_an_error_not_a_crash() -> None:
    verdict = decide(summarise("patched", []), "clean")
    assert (verdict.kind, verdict.reason) == ("error", "patched: no trial was run")


_BOTH: dict[str, Expectation] = {"unpatched": "fails", "patched": "clean"}


def _run(unpatched: list[bool], patched: list[bool]) -> list[TrialResult]:
    """Trials of both variants: True for a trial with a 5xx."""
    return [
        trial(name, n, ["server-error" if failed else "ok", "ok"])
        for name, outcomes in (("unpatched", unpatched), ("patched", patched))
        for n, failed in enumerate(outcomes, 1)
    ]


def test_rates_carry_their_wilson_intervals() -> None:
    summary = summarise("unpatched", _run([True] * 5 + [False] * 5, []))
    rate = summary.trial_failure_rate
    assert (rate.count, rate.total) == (5, 10)
    assert (rate.low, rate.high) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    assert (summary.request_failure_rate.count, summary.request_failure_rate.total) == (5, 20)


def test_a_clean_variant_states_its_power_against_the_broken_one_of_the_same_run() -> None:
    _, verdicts, code = judge(_BOTH, _run([True, False, True], [False] * 3))
    unpatched, patched = verdicts
    assert "first failure in trial 1" in unpatched.reason
    assert "failure rate per trial 67% (95% CI 21%-94%)" in unpatched.reason
    assert patched.power is not None
    assert patched.power.at_estimate == pytest.approx(1 - (1 / 3) ** 3)  # 0.963
    assert patched.power.at_low == pytest.approx(1 - (1 - patched.power.reference_rate.low) ** 3)
    assert "a build as broken as unpatched (2 of 3 trials failed) would have failed at least one of 3 trials" in (
        patched.reason
    )
    assert "with chance 96.2%" in patched.reason
    assert code is ExitCode.OK


def test_a_clean_variant_alone_has_no_measured_power() -> None:
    _, [patched], _ = judge({"patched": "clean"}, _run([], [False]))
    assert patched.power is None and patched.kind == "met"
    assert "what these trials could catch is unknown" in patched.reason


def test_with_confidence_too_few_clean_trials_are_undecided_and_enough_are_met() -> None:
    _, verdicts, code = judge(_BOTH, _run([True] * 6, [False] * 6), confidence=0.99)
    assert [v.kind for v in verdicts] == ["met", "undecided"] and code is ExitCode.UNDECIDED
    assert (
        "not decided at 99% confidence: in 6 pairs of trials (trial n of each build) unpatched failed and this build "
        "did not, 7 are needed"
    ) in verdicts[1].reason
    _, verdicts, code = judge(_BOTH, _run([True] * 7, [False] * 7), confidence=0.99)
    assert [v.kind for v in verdicts] == ["met", "met"] and code is ExitCode.OK
    assert (
        "decided clean at 99% confidence: in 7 pairs of trials (trial n of each build) unpatched failed and this "
        "build did not; a build failing at least as often as unpatched would show that with chance at most 1 in 128, "
        "within the 1% allowed"
    ) in verdicts[1].reason
    assert verdicts[1].confidence == 0.99
    assert verdicts[1].power is not None and verdicts[1].power.favourable_pairs == 7


def test_only_pairs_the_reference_failed_and_the_clean_build_ran_without_error_count() -> None:
    # Unpatched fails 9 trials; its 8th could not be run, and the clean build ran only 8 (the run was cut short).
    trials = _run([True] * 9, [False] * 8)
    trials[7] = replace(trials[7], error="did not start")
    outcomes = trial_outcomes("unpatched", trials)
    assert 8 not in outcomes and len(outcomes) == 8
    _, [_, patched], _ = judge(_BOTH, trials, confidence=0.99)
    assert patched.power is not None and patched.power.favourable_pairs == 7  # trials 1 to 7
    assert patched.kind == "met"


def test_against_several_references_a_clean_build_needs_the_pairs_against_each() -> None:
    expectations: dict[str, Expectation] = {"odd": "fails", "even": "fails", "patched": "clean"}

    def run(last: int) -> list[TrialResult]:
        """Trials 1 to ``last``: odd fails the odd ones, even the even ones, patched none."""
        return [
            trial(name, n, ["server-error" if n % 2 == remainder else "ok"])
            for name, remainder in (("odd", 1), ("even", 0), ("patched", None))
            for n in range(1, last + 1)
        ]

    _, [*_, patched], _ = judge(expectations, run(13), confidence=0.99)
    assert patched.kind == "undecided"  # 7 pairs against odd, 6 against even
    assert "in at least 6 pairs of trials (trial n of each build) each of odd, even failed" in patched.reason
    _, [*_, patched], _ = judge(expectations, run(14), confidence=0.99)
    assert patched.kind == "met"
    assert "a build failing at least as often as any one of them would show that" in patched.reason


def test_with_confidence_a_reproducer_without_failure_is_undecided_not_silent() -> None:
    _, [unpatched], code = judge({"unpatched": "fails"}, _run([False] * 4, []), confidence=0.9)
    assert unpatched.kind == "undecided" and code is ExitCode.UNDECIDED
    assert "per-trial failure rate is at most 49%, 95%" in unpatched.reason  # Wilson upper bound of 0/4
    assert "went silent" not in unpatched.reason and "a rare failure cannot be told from none" in unpatched.reason


def test_a_failure_decides_at_once_whatever_the_confidence() -> None:
    _, verdicts, code = judge(_BOTH, _run([True], [True]), confidence=0.99)
    assert [v.kind for v in verdicts] == ["met", "regression"] and code is ExitCode.REGRESSION


@pytest.mark.parametrize("confidence", [None, 0.99])
def test_the_pipeline_recover_and_the_plugins_merge_judge_equal_trials_alike(
    tmp_path: Path, confidence: float | None
) -> None:
    scenario = load_scenario("burst")
    builds = (Variant(name="unpatched", app="m:app", expect="fails"), Variant(name="patched", app="m:app"))
    trials = [
        trial(variant, n, [outcome])
        for n, outcomes in enumerate([("server-error", "ok"), ("ok", "ok"), ("server-error", "ok")], 1)
        for variant, outcome in zip(("unpatched", "patched"), outcomes, strict=True)
    ]

    def run(*variants: Variant) -> RunResult:
        plan = RunPlan(scenario=scenario, variants=variants, run_dir=tmp_path, confidence=confidence)
        own = [t for t in trials if t.variant in {v.name for v in variants}]
        return judged_plan(plan, own, {}, "2026-11-22T00:00:00.000+00:00", 0.0, complete=True, database_server=None)

    piped = run(*builds)
    write_results(piped, tmp_path / RESULTS_FILE)
    recovered, _ = recover(tmp_path)
    merged = merge_results([run(builds[0]), run(builds[1])])

    assert piped.verdicts == recovered.verdicts == merged.verdicts
    assert piped.confidence == recovered.confidence == merged.confidence == confidence
    assert [v.kind for v in piped.verdicts] == ["met", "met" if confidence is None else "undecided"]


def leaky(variant: str, number: int, unclosed: int | None, outcomes: list[Outcome] | None = None) -> TrialResult:
    """A trial whose trace left ``unclosed`` connections never closed (None: its trace could not tell)."""
    return replace(trial(variant, number, outcomes or ["ok", "ok"]), unclosed_connections=unclosed)


def test_a_trial_fails_on_a_leak_only_with_leak_in_fail_on_and_above_the_threshold() -> None:
    trials = [leaky("recommended", 1, 3), leaky("recommended", 2, 1), leaky("recommended", 3, 0)]

    assert trial_outcomes("recommended", trials) == {1: False, 2: False, 3: False}
    assert trial_outcomes("recommended", trials, ["leak"]) == {1: True, 2: True, 3: False}
    assert trial_outcomes("recommended", trials, ["leak"], leak_threshold=1) == {1: True, 2: False, 3: False}
    summary = summarise("recommended", trials, ["5xx", "leak"], leak_threshold=1)
    assert (summary.failed_trials, summary.leak_trials, summary.first_failed_trial) == (1, 1, 1)
    assert summarise("recommended", trials).leak_trials == 0  # not judged: fail_on has no "leak"


def test_a_build_expected_clean_that_leaks_is_a_regression_that_says_it_failed_on_a_leak() -> None:
    trials = [leaky("recommended", 1, 4), leaky("recommended", 2, 0)]
    summary = summarise("recommended", trials, ["5xx", "leak"])

    verdict = decide(summary, "clean", fail_on=["5xx", "leak"])

    assert (verdict.observed, verdict.kind) == ("fails", "regression")
    assert (
        "0 of 4 requests returned 5xx and 1 trial left connections never closed or given back (at most 4 in one), "
        "in 1 of 2 trials (50%)" in verdict.reason
    )


def test_a_clean_verdict_and_a_silent_one_say_no_trial_leaked() -> None:
    trials = [leaky("patched", 1, 2)]
    clean = decide(summarise("patched", trials, ["leak"], 2), "clean", fail_on=["leak"], leak_threshold=2)
    assert clean.kind == "met"
    assert "2 requests in 1 trials; no trial left more than 2 connections never closed or given back" in clean.reason
    silent = decide(
        summarise("patched", trials, ["5xx", "leak"], 2), "fails", fail_on=["5xx", "leak"], leak_threshold=2
    )
    assert silent.kind == "silent"
    assert (
        "no request of its 1 trials returned a 5xx and no trial left more than 2 connections never closed"
        in silent.reason
    )


def test_a_build_whose_trace_shows_no_connections_cannot_fail_on_a_leak_and_its_verdict_says_so() -> None:
    verdict = decide(summarise("mine", [leaky("mine", 1, None)], ["leak"]), "clean", fail_on=["leak"])
    assert verdict.kind == "met"
    assert "its trace showed none of its connections" in verdict.reason
    assert "so no trial could fail on a leak" in verdict.reason
    seen = decide(summarise("mine", [leaky("mine", 1, 0)], ["leak"]), "clean", fail_on=["leak"])
    assert "could fail on a leak" not in seen.reason


def test_a_run_judged_from_its_scenario_fails_its_leaking_build(tmp_path: Path) -> None:
    scenario = replace(load_scenario("burst"), fail_on=("5xx", "leak"), leak_threshold=1)
    trials = [leaky("unpatched", 1, 0, ["server-error"]), leaky("recommended", 1, 2)]

    result = judged_run(
        scenario,
        {"unpatched": "fails", "recommended": "clean"},
        trials,
        started_at="2026-11-21T00:00:00.000+00:00",
        duration=1.0,
        complete=True,
        environment={},
        confidence=None,
    )

    assert [v.kind for v in result.verdicts] == ["met", "regression"]
    assert [s.leak_trials for s in result.summaries] == [0, 1]
    assert result.exit_code == ExitCode.REGRESSION


LEAKS = """\
description = "30 requests at once on /slowusers/; a trial fails on a connection never closed"
trials = 2
time_scale = 0.05
fail_on = ["leak"]

[seed]
users = 2
items_per_user = 2

[schedule]
kind = "burst"
requests = 30
"""


@pytest.mark.e2e
def test_fail_on_leak_fails_the_tutorials_recommended_build_and_leaves_patched_clean(tmp_path: Path) -> None:
    # recommended's response validation queries user.items lazily on a worker thread and leaves that connection
    # open, in every trial that answers a request. unpatched leaves connections on the threads that opened them:
    # 50 of 50 trials of this burst left some (at most 14), 2 cores under load.
    (tmp_path / "leaks.toml").write_text(LEAKS)

    completed = runs.harness("run", "--scenario", tmp_path / "leaks.toml", "--out", tmp_path / "out")

    assert completed.returncode == ExitCode.REGRESSION, completed.stdout + completed.stderr
    assert "recommended was expected to be clean but 2 trials left connections never closed" in completed.stdout
    assert "recommended  clean     2/2 (2 on a leak)" in completed.stdout
    [path] = (tmp_path / "out").glob(f"*-leaks/{RESULTS_FILE}")
    result = read_results(path)
    kinds = {v.variant: (v.observed, v.kind) for v in result.verdicts}
    assert kinds == {
        "unpatched": ("fails", "met"),
        "patched": ("clean", "met"),
        "recommended": ("fails", "regression"),
    }
    leak_trials = {s.variant: s.leak_trials for s in result.summaries}
    assert leak_trials == {"unpatched": 2, "patched": 0, "recommended": 2}


def test_most_common_names_what_the_failed_requests_ended_in_not_the_servers_most_frequent_exception() -> None:
    # Every scheduled request timed out; the server's exceptions came from seed requests and from requests it
    # went on serving after the client gave up: before, the verdict said "most common: IntegrityError (4x)".
    integrity = replace(CONNECTION_OPENED, type="sqlite3.IntegrityError", message="UNIQUE constraint failed")
    seed = [replace(record("app", 1, i, "server-error", phase="seed"), exceptions=(integrity,)) for i in range(3)]
    late = replace(record("app", 1, 0, "timeout"), exceptions=(integrity,))
    timed_out = [late, *(record("app", 1, i, "timeout") for i in range(1, 3))]
    trials = [replace(trial("app", 1, []), records=(*seed, *timed_out))]
    fail_on: list[FailureKind] = ["5xx", "timeout"]

    verdict = decide(summarise("app", trials, fail_on), "fails", fail_on=fail_on)

    assert "3 of 3 requests failed (0 5xx, 3 timeouts)" in verdict.reason
    assert "most common: timeout (3x)" in verdict.reason and "IntegrityError" not in verdict.reason

    # 5xx with no exception of the server's (an app that answers 500 itself) by their status; the most frequent wins
    answered = [replace(record("app", 2, i, "server-error"), status=503, exceptions=()) for i in range(4)]
    trials.append(replace(trial("app", 2, []), records=tuple(answered)))
    assert "most common: HTTP 503 (4x)" in decide(summarise("app", trials, fail_on), "fails", fail_on=fail_on).reason


def test_one_failure_of_many_objects_is_counted_once_its_addresses_masked() -> None:
    # SQLAlchemy names the object in its message: each request's is another, and the failure the same.
    def detached(at: str) -> ServerException:
        message = f"Object <Note at 0x{at}> cannot be converted to 'persistent' state"
        return replace(CONNECTION_OPENED, type="sqlalchemy.exc.InvalidRequestError", message=message)

    records = [
        replace(record("app", 1, i, "server-error"), exceptions=(detached(at),))
        for i, at in enumerate(["7fe718d45b10", "7fe718d94190", "7fe7651e7100"])
    ]
    trials = [replace(trial("app", 1, []), records=tuple(records))]

    summary = summarise("app", trials)

    [group] = summary.exceptions
    assert (group.count, group.message) == (3, "Object <Note at 0x...> cannot be converted to 'persistent' state")
    assert "most common: InvalidRequestError: Object <Note at 0x...> cannot" in decide(summary, "fails").reason
    assert "(3x)" in decide(summary, "fails").reason


def test_a_multi_line_exception_message_is_named_by_its_first_line_in_the_verdict() -> None:
    message = "validation failed\n  field: name\n  reason: missing"
    failed = replace(CONNECTION_OPENED, type="app.ValidationError", message=message)
    broken = replace(trial("app", 1, []), records=(replace(record("app", 1, 0, "server-error"), exceptions=(failed,)),))

    verdict = decide(summarise("app", [broken]), "fails")

    assert "most common: ValidationError: validation failed [+2 more lines] (1x)" in verdict.reason
    assert "\n" not in verdict.reason
