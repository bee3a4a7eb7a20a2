"""From records to verdicts: count what each variant did and hold it to its expectation.

A trial *fails* when a request of its schedule failed in a way the scenario's ``fail_on``
counts: a 5xx (the default, the tutorial's signature), a transport error (a connection
reset by a crashing worker), a timeout (a hang: a thread pool or a database pool ran
dry); or, with ``leak``, when its app's trace shows more connections never closed (or
never given back to their pool) than the scenario's ``leak_threshold``. Each kind is
counted apart. A variant with uncounted unanswered requests (transport
errors, timeouts) and no counted failure is *degraded*, which does not count as the
reproducer reproducing, and does not count as clean either. Seed requests are set-up,
not the experiment: the harness retries them and counts them apart. A variant *errors*
when any of its trials could not be carried out (its server did not start, seeding
failed): the harness then cannot say what it would have done.

Each verdict states how sure it is (:mod:`harness.stats`): failure rates per trial and
per request with their 95% intervals, the trial of the first failure, and for a clean
variant the power of its clean trials against the variants expected to fail, as
measured in the same run. With ``--confidence``, a clean variant is decided by pairing
its trials with theirs by trial number (:func:`harness.stats.clean_is_decided`), so
each variant's trials are kept by number (:func:`trial_outcomes`), not only counted.

In explore mode (:mod:`harness.explore`) a build is judged by what the search found
(:func:`decide_explore`): a failing schedule is a witness, replayable, so a build that
fails in one fails; a clean result is stated as what was searched and what that
guarantees (PCT's bound per schedule, or every schedule within a deviation bound).

A run's record is judged in one place, :func:`judged_run`, wherever its trials come from:
the pipeline after each round and explore mode after each build (both through
:func:`judged_plan`), ``harness recover``, the pytest plugin's merge of its items.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from harness.diagnosis import count_causes
from harness.errors import ExitCode
from harness.results import (
    ExceptionCount,
    ExploreResult,
    FailureCount,
    Observed,
    Outcome,
    Power,
    Rate,
    RequestRecord,
    RunResult,
    TrialResult,
    VariantSummary,
    Verdict,
    VerdictKind,
)
from harness.scenario import DEFAULT_FAIL_ON, DEFAULT_LEAK_THRESHOLD, FailureKind, Scenario
from harness.search import counted
from harness.server.tracer import without_addresses

if TYPE_CHECKING:
    from harness.plan import RunPlan
from harness.stats import (
    clean_is_decided,
    detection_power,
    false_clean_chance,
    fewest_favourable_pairs,
    pairs_needed,
    wilson_interval,
)
from harness.terminal import first_line
from harness.urls import display_url
from harness.variant import Database, Expectation

# A run's exit code from its verdicts' kinds: the first kind present, in this order, wins.
VERDICT_EXIT_CODES: dict[VerdictKind, ExitCode] = {
    "regression": ExitCode.REGRESSION,
    "error": ExitCode.HARNESS_ERROR,
    "silent": ExitCode.SILENT,
    "undecided": ExitCode.UNDECIDED,
}
_NO_TRIALS: Mapping[int, bool] = MappingProxyType({})


def summarise(
    variant: str,
    trials: Iterable[TrialResult],
    fail_on: Collection[FailureKind] = DEFAULT_FAIL_ON,
    leak_threshold: int = DEFAULT_LEAK_THRESHOLD,
) -> VariantSummary:
    own = [trial for trial in trials if trial.variant == variant]
    schedule = [r for trial in own for r in trial.records if r.phase == "schedule"]
    seed = [r for trial in own for r in trial.records if r.phase == "seed"]
    counted = _counted(fail_on)
    outcomes = trial_outcomes(variant, own, fail_on, leak_threshold)
    failed = [number for number, failure in outcomes.items() if failure]

    def count(outcome: str) -> int:
        return sum(1 for r in schedule if r.outcome == outcome)

    peaks = [trial.peak_connections for trial in own if trial.peak_connections is not None]
    leaks = [trial.leaked_connections for trial in own if trial.leaked_connections is not None]
    unclosed = [trial.unclosed_connections for trial in own if trial.unclosed_connections is not None]
    most = [trial.most_checked_out for trial in own if trial.most_checked_out is not None]

    return VariantSummary(
        variant=variant,
        trials=len(own),
        failed_trials=len(failed),
        error_trials=sum(1 for trial in own if trial.error is not None),
        requests=len(schedule),
        ok=count("ok"),
        client_errors=count("client-error"),
        server_errors=count("server-error"),
        transport_errors=count("transport-error"),
        timeouts=count("timeout"),
        interrupted=count("interrupted"),
        seed_requests=len(seed),
        seed_server_errors=sum(1 for r in seed if r.outcome == "server-error"),
        first_failed_trial=min(failed, default=None),
        exceptions=group_exceptions(r for trial in own for r in trial.records),
        causes=count_causes(r for trial in own for r in trial.records),
        trial_failure_rate=rate(len(failed), len(outcomes)),
        request_failure_rate=rate(sum(1 for r in schedule if r.outcome in counted), len(schedule)),
        peak_connections=max(peaks, default=None),
        leaked_connections=max(leaks, default=None),
        leaking_trials=sum(1 for leaked in leaks if leaked),
        unclosed_connections=max(unclosed, default=None),
        leak_trials=sum(1 for trial in own if trial.error is None and _leaked(trial, leak_threshold))
        if "leak" in fail_on
        else 0,
        most_common_failure=most_common_failure(r for r in schedule if r.outcome in counted),
        most_checked_out=max(most, default=None),
        pooled=any(trial.pooled for trial in own),
    )


def trial_outcomes(
    variant: str,
    trials: Iterable[TrialResult],
    fail_on: Collection[FailureKind] = DEFAULT_FAIL_ON,
    leak_threshold: int = DEFAULT_LEAK_THRESHOLD,
) -> dict[int, bool]:
    """The variant's trials by number, True for one that failed; a trial with an error is no outcome and left out."""
    counted = _counted(fail_on)
    return {
        trial.trial: _failed(trial, counted) or ("leak" in fail_on and _leaked(trial, leak_threshold))
        for trial in trials
        if trial.variant == variant and trial.error is None
    }


def most_common_failure(failed: Iterable[RequestRecord]) -> FailureCount | None:
    """What the failed requests most often ended in, each by its own end: the exception it raised, else its outcome.

    Not the server's most frequent exception: that may come from seed requests, or from
    requests the client had given up on (a timeout), which did not fail the way it says.
    """
    counts = Counter(_failure_words(record) for record in failed)
    if not counts:
        return None
    what, count = counts.most_common(1)[0]
    return FailureCount(what=what, count=count)


def _failure_words(record: RequestRecord) -> str:
    if record.outcome == "timeout":
        return "timeout"  # whatever the server raised later, the client had stopped waiting
    if record.exceptions:
        first = record.exceptions[0]
        return f"{_short_type(first.type)}: {first_line(without_addresses(first.message))}"
    return f"HTTP {record.status}" if record.outcome == "server-error" else "transport error"


def group_exceptions(records: Iterable[RequestRecord]) -> tuple[ExceptionCount, ...]:
    """Server-side exceptions grouped by type and message (its objects' addresses masked), most frequent first."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for record in records:
        for exc in record.exceptions:
            key = (exc.type, without_addresses(exc.message))
            groups.setdefault(key, []).append((record.request_id, exc.traceback))
    counts = [
        ExceptionCount(type=kind, message=message, count=len(seen), first_request_id=seen[0][0], traceback=seen[0][1])
        for (kind, message), seen in groups.items()
    ]
    return tuple(sorted(counts, key=lambda c: -c.count))


def judged_run(
    scenario: Scenario,
    expectations: Mapping[str, Expectation],
    trials: Iterable[TrialResult],
    *,
    confidence: float | None,
    started_at: str,
    duration: float,
    complete: bool,
    environment: dict[str, str],
    jobs: int = 1,
    trace: bool = True,
    url: str | None = None,
    databases: Mapping[str, Database] | None = None,
    database_server: str | None = None,
    hosts: Mapping[str, str] | None = None,
    explore: Sequence[ExploreResult] = (),
    interpreters: Mapping[str, dict[str, str]] | None = None,
) -> RunResult:
    """The run's record, judged: its variants in the order of ``expectations``, its trials by number and variant.

    ``confidence`` has no default: the level a run's verdicts are decided at is the one its
    record states, so a run read back and judged again (``harness recover``) cannot quietly
    lose it and call an undecided build "met". The other facts are recorded as they are given.
    """
    order = {variant: position for position, variant in enumerate(expectations)}
    ordered = tuple(sorted(trials, key=lambda t: (t.trial, order[t.variant])))
    summaries, verdicts, code = judge(
        expectations,
        ordered,
        confidence=confidence,
        fail_on=scenario.fail_on,
        leak_threshold=scenario.leak_threshold,
    )
    if explore:
        searched = {result.variant: result for result in explore}
        verdicts = tuple(
            decide_explore(searched[name], expected, confidence=confidence)
            if name in searched
            else Verdict(
                variant=name,
                expected=expected,
                observed="error",
                kind="error",
                reason=f"{name}: not explored",
                confidence=confidence,
            )
            for name, expected in expectations.items()
        )
        code = exit_code(verdicts)
    return RunResult(
        scenario=scenario,
        variants=tuple(expectations),
        started_at=started_at,
        duration=duration,
        complete=complete,
        environment=environment,
        trials=ordered,
        summaries=summaries,
        verdicts=verdicts,
        exit_code=code,
        jobs=jobs,
        confidence=confidence,
        trace=trace,
        url=url,
        databases=dict(databases or {}),
        database_server=database_server,
        hosts=dict(hosts or {}),
        explore=tuple(explore),
        interpreters=dict(interpreters or {}),
    )


def decide_explore(result: ExploreResult, expected: Expectation, *, confidence: float | None) -> Verdict:
    """One build's verdict from its search: a failure found is a witness; a clean search says what it covered."""
    name = result.variant
    if result.error is not None:
        return Verdict(
            variant=name, expected=expected, observed="error", kind="error", reason=f"{name}: {result.error}"
        )
    kind: VerdictKind
    if result.failed:
        found = f"{result.searched}: {result.failure}"
        if result.shrunk_requests:
            shrunk = counted(len(result.shrunk_requests), "request")
            found += f"; shrunk to {shrunk} and {counted(result.shrunk_deviations, 'deviation')}"
        found += {
            True: ", which failed the same way again in a fresh server",
            False: ", which did not fail the same way again in a fresh server (it may depend on what earlier "
            "schedules left in the server)",
            None: "",
        }[result.replayed]
        if expected == "fails":
            kind, reason = "met", f"{name} failed as expected: {found}"
        else:
            kind, reason = "regression", f"{name} was expected to be clean but {found}"
        return Verdict(variant=name, expected=expected, observed="fails", kind=kind, reason=reason)
    if expected == "fails":
        reason = f"{name} was expected to fail but showed {result.searched}"
        return Verdict(variant=name, expected=expected, observed="clean", kind="silent", reason=reason)
    kind, reason = "met", f"{name} was clean as expected: {result.searched}"
    if confidence is not None:
        decided = result.exhausted or (result.guarantee is not None and result.guarantee >= confidence)
        kind = "met" if decided else "undecided"
        reason += f"; {'decided' if decided else 'not decided'} at {confidence:.0%} confidence"
    return Verdict(variant=name, expected=expected, observed="clean", kind=kind, reason=reason, confidence=confidence)


def judge(
    expectations: Mapping[str, Expectation],
    trials: Sequence[TrialResult],
    *,
    confidence: float | None = None,
    fail_on: Collection[FailureKind] = DEFAULT_FAIL_ON,
    leak_threshold: int = DEFAULT_LEAK_THRESHOLD,
) -> tuple[tuple[VariantSummary, ...], tuple[Verdict, ...], ExitCode]:
    """Summaries and verdicts of every variant (in the mapping's order), and the run's exit code.

    The reference a clean variant is measured against is every variant expected to fail: pooled for
    its power, each one apart for the pairs of trials that decide it.
    """
    summaries = tuple(summarise(variant, trials, fail_on, leak_threshold) for variant in expectations)
    outcomes = {variant: trial_outcomes(variant, trials, fail_on, leak_threshold) for variant in expectations}
    broken = [s for s in summaries if expectations[s.variant] == "fails"]
    reference = (
        Reference(
            variants=tuple(s.variant for s in broken),
            rate=rate(sum(s.failed_trials for s in broken), sum(s.trials - s.error_trials for s in broken)),
            outcomes=tuple(outcomes[s.variant] for s in broken),
        )
        if broken
        else None
    )
    verdicts = tuple(
        decide(
            s,
            expectations[s.variant],
            reference=reference,
            outcomes=outcomes[s.variant],
            confidence=confidence,
            fail_on=fail_on,
            leak_threshold=leak_threshold,
        )
        for s in summaries
    )
    return summaries, verdicts, exit_code(verdicts)


@dataclass(frozen=True, kw_only=True)
class Reference:
    """The variants expected to fail: what a clean variant is measured against.

    ``rate`` is their failed trials pooled; ``outcomes`` each one's trials by number (:func:`trial_outcomes`).
    """

    variants: tuple[str, ...]
    rate: Rate
    outcomes: tuple[Mapping[int, bool], ...]


def rate(count: int, total: int) -> Rate:
    low, high = wilson_interval(count, total)
    return Rate(count=count, total=total, low=low, high=high)


def decide(
    summary: VariantSummary,
    expected: Expectation,
    *,
    reference: Reference | None = None,
    outcomes: Mapping[int, bool] = _NO_TRIALS,
    confidence: float | None = None,
    fail_on: Collection[FailureKind] = DEFAULT_FAIL_ON,
    leak_threshold: int = DEFAULT_LEAK_THRESHOLD,
) -> Verdict:
    """Hold one variant's summary to what the scenario expects of it.

    ``outcomes`` are its trials by number (:func:`trial_outcomes`), paired with the reference's.
    With ``confidence``, a variant expected to fail that has not failed, and a clean variant
    whose pairs of trials do not yet decide it (:func:`harness.stats.clean_is_decided`), are
    "undecided" instead of silent or met.
    """
    name, trials, failed = summary.variant, summary.trials, summary.failed_trials
    if not trials:
        return Verdict(
            variant=name,
            expected=expected,
            observed="error",
            kind="error",
            reason=f"{name}: no trial was run",
            confidence=confidence,
        )
    if summary.error_trials:
        reason = f"{name}: {summary.error_trials} of {trials} trials could not be run; see the trial errors"
        return Verdict(
            variant=name, expected=expected, observed="error", kind="error", reason=reason, confidence=confidence
        )
    unanswered = (0 if "transport-error" in fail_on else summary.transport_errors) + (
        0 if "timeout" in fail_on else summary.timeouts
    )
    observed: Observed = "fails" if failed else "degraded" if unanswered else "clean"
    kinds = _request_kinds(fail_on)
    failures = " and ".join(
        [
            *([_failed_requests(summary, kinds)] if kinds else []),
            *([_leaking_trials(summary, leak_threshold)] if "leak" in fail_on else []),
        ]
    )
    failures += f", in {failed} of {trials} trials ({failed / trials:.0%})"
    if summary.most_common_failure is not None:
        failures += f"; most common: {summary.most_common_failure.what} ({summary.most_common_failure.count}x)"
    power = _power(reference, trials, outcomes) if expected == "clean" and not failed and not unanswered else None
    kind: VerdictKind
    if expected == "fails" and failed:
        kind, reason = "met", f"{name} failed as expected: {failures}"
        if failed < trials:
            reason += f"; {trials - failed} of {trials} trials saw no failure at all, so one trial alone can miss it"
        reason += f"; first failure in trial {summary.first_failed_trial}; {_rates(summary)}"
    elif expected == "fails":
        reason = (
            f"{name} was expected to fail but {_none_failed(trials, fail_on, leak_threshold)} "
            f"(its per-trial failure rate is at most {summary.trial_failure_rate.high:.0%}, 95%)"
        )
        if confidence is None:
            kind, reason = "silent", f"{reason}: the reproducer went silent on this stack and schedule"
        else:
            kind, reason = (
                "undecided",
                f"{reason}; at {confidence:.0%} confidence a rare failure cannot be told from none",
            )
    elif failed:
        kind, reason = "regression", f"{name} was expected to be clean but {failures}; {_rates(summary)}"
    elif unanswered:
        kind = "regression"
        reason = f"{name} was expected to be clean but {unanswered} of {summary.requests} requests got no answer"
    else:
        kind, reason = (
            "met",
            f"{name} was clean as expected: {summary.requests} requests in {trials} trials"
            + (f", none {_failing(kinds)}" if kinds else "")
            + (f"; no trial left {_leak_words(leak_threshold)}" if "leak" in fail_on else ""),
        )
        reason += f"; {_describe_power(power)}"
        if confidence is not None:
            decided = reference is not None and clean_is_decided(outcomes, reference.outcomes, confidence)
            kind = "met" if decided else "undecided"
            reason += f"; {_describe_decision(power, confidence, decided=decided)}"
    if summary.transport_errors + summary.timeouts and set(kinds) == {"5xx"}:
        reason += f" ({summary.transport_errors} transport errors and {summary.timeouts} timeouts, counted apart)"
    if "leak" in fail_on and summary.unclosed_connections is None:
        reason += (
            "; its trace showed none of its connections (no database the tracer follows, or the trace was cut at "
            "its limit), so no trial could fail on a leak"
        )
    return Verdict(
        variant=name,
        expected=expected,
        observed=observed,
        kind=kind,
        reason=reason,
        power=power,
        confidence=confidence,
    )


def exit_code(verdicts: Sequence[Verdict]) -> ExitCode:
    kinds = {verdict.kind for verdict in verdicts}
    return next((code for kind, code in VERDICT_EXIT_CODES.items() if kind in kinds), ExitCode.OK)


def _power(reference: Reference | None, trials: int, outcomes: Mapping[int, bool]) -> Power | None:
    if reference is None or reference.rate.estimate is None:
        return None
    return Power(
        reference=reference.variants,
        reference_rate=reference.rate,
        trials=trials,
        at_estimate=detection_power(reference.rate.estimate, trials),
        at_low=detection_power(reference.rate.low, trials),
        favourable_pairs=fewest_favourable_pairs(outcomes, reference.outcomes),
    )


def _describe_power(power: Power | None) -> str:
    if power is None:
        return "no variant expected to fail was measured in this run, so what these trials could catch is unknown"
    measured = power.reference_rate
    return (
        f"a build as broken as {', '.join(power.reference)} ({measured.count} of {measured.total} trials failed) "
        f"would have failed at least one of {power.trials} trials with chance {_floor_percent(power.at_estimate)} "
        f"({_floor_percent(power.at_low)} at the low end of its 95% interval)"
    )


def _describe_decision(power: Power | None, confidence: float, *, decided: bool) -> str:
    """The stopping rule's evidence, e.g. ``decided clean at 99% confidence: in 7 pairs of trials ...``."""
    if power is None:
        return f"not decided at {confidence:.0%} confidence"
    pairs, several = power.favourable_pairs, len(power.reference) > 1
    evidence = (
        f"in {'at least ' if several else ''}{pairs} pairs of trials (trial n of each build) "
        f"{'each of ' + ', '.join(power.reference) if several else power.reference[0]} failed and this build did not"
    )
    if not decided:
        return f"not decided at {confidence:.0%} confidence: {evidence}, {pairs_needed(confidence)} are needed"
    return (
        f"decided clean at {confidence:.0%} confidence: {evidence}; a build failing at least as often as "
        f"{'any one of them' if several else power.reference[0]} would show that with chance at most "
        f"1 in {round(1 / false_clean_chance(pairs))}, within the {(1 - confidence) * 100:.3g}% allowed"
    )


def _rates(summary: VariantSummary) -> str:
    trial, request = summary.trial_failure_rate, summary.request_failure_rate
    return f"failure rate per trial {_interval(trial)}, per request {_interval(request)}"


def _interval(measured: Rate) -> str:
    estimate = measured.estimate or 0.0
    return f"{estimate:.0%} (95% CI {measured.low:.0%}-{measured.high:.0%})"


def _floor_percent(value: float) -> str:
    """A chance rounded down to 0.1%: 99.96% must not read as a certain 100.0%."""
    return f"{math.floor(value * 1000) / 10:.1f}%"


# The kinds of failure a request shows by its outcome; "leak" is the whole trial's (:func:`_leaked`).
_OUTCOMES: dict[FailureKind, Outcome] = {
    "5xx": "server-error",
    "transport-error": "transport-error",
    "timeout": "timeout",
}


def _request_kinds(fail_on: Collection[FailureKind]) -> list[FailureKind]:
    return [kind for kind in fail_on if kind in _OUTCOMES]


def _counted(fail_on: Collection[FailureKind]) -> set[Outcome]:
    return {_OUTCOMES[kind] for kind in _request_kinds(fail_on)}


def _failed(trial: TrialResult, counted: Collection[Outcome]) -> bool:
    return any(r.phase == "schedule" and r.outcome in counted for r in trial.records)


def _leaked(trial: TrialResult, threshold: int) -> bool:
    """Whether the trial's trace shows more connections never closed than ``threshold`` (unknown: no)."""
    return trial.unclosed_connections is not None and trial.unclosed_connections > threshold


def _leak_words(threshold: int) -> str:
    """What a trial that fails on a leak left: ``connections never closed or given back``."""
    return f"{'more than ' + str(threshold) + ' ' if threshold else ''}connections never closed or given back"


def _leaking_trials(summary: VariantSummary, threshold: int) -> str:
    """``5 trials left connections never closed or given back (at most 6 in one)``."""
    most = f" (at most {summary.unclosed_connections} in one)" if summary.unclosed_connections else ""
    return f"{counted(summary.leak_trials, 'trial')} left {_leak_words(threshold)}{most}"


def _none_failed(trials: int, fail_on: Collection[FailureKind], threshold: int) -> str:
    """``no request of its 5 trials returned a 5xx and no trial left connections never closed ...``."""
    kinds = _request_kinds(fail_on)
    clauses = [f"no request of its {trials} trials {_failing(kinds)}"] if kinds else []
    if "leak" in fail_on:
        clauses.append(f"no trial{'' if kinds else f' of its {trials}'} left {_leak_words(threshold)}")
    return " and ".join(clauses)


def _failed_requests(summary: VariantSummary, fail_on: Collection[FailureKind]) -> str:
    """``3 of 10 requests returned 5xx``, or with more kinds counted, each kind's share."""
    if set(fail_on) == {"5xx"}:
        return f"{summary.server_errors} of {summary.requests} requests returned 5xx"
    counts = {"5xx": summary.server_errors, "transport-error": summary.transport_errors, "timeout": summary.timeouts}
    words = {"5xx": "5xx", "transport-error": "transport errors", "timeout": "timeouts"}
    parts = ", ".join(f"{counts[kind]} {words[kind]}" for kind in _OUTCOMES if kind in fail_on)
    return f"{summary.request_failure_rate.count} of {summary.requests} requests failed ({parts})"


def _failing(fail_on: Collection[FailureKind]) -> str:
    """What a failed request did, in the words of a sentence: ``returned a 5xx``."""
    words = {"5xx": "returned a 5xx", "transport-error": "lost its connection", "timeout": "timed out"}
    return " or ".join(words[kind] for kind in _OUTCOMES if kind in fail_on)


def _short_type(qualified: str) -> str:
    return qualified.rsplit(".", 1)[-1]


def judged_plan(
    plan: RunPlan,
    trials: list[TrialResult],
    environment: dict[str, str],
    started_at: str,
    started: float,
    *,
    complete: bool,
    database_server: str | None = None,
    explore: Sequence[ExploreResult] = (),
) -> RunResult:
    """The plan's record so far, judged: its trials, and in explore mode its builds' searches."""
    return judged_run(
        plan.scenario,
        {v.name: plan.scenario.expectation(v, plan.database_of(v)) for v in plan.variants},
        trials,
        confidence=plan.confidence,
        started_at=started_at,
        duration=round(time.monotonic() - started, 3),
        complete=complete,
        environment=environment,
        jobs=plan.jobs,
        trace=plan.trace and plan.url is None,
        url=display_url(plan.url) if plan.url else None,  # the run uses plan.url; its record never the password
        databases={v.name: plan.database_of(v) for v in plan.variants} if plan.url is None else {},
        database_server=database_server,
        explore=explore,
        interpreters={name: interpreter.record() for name, interpreter in plan.interpreters.items()},
    )
