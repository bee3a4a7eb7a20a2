"""From records to verdicts: count what each variant did and hold it to its expectation.

A trial *fails* when a request of its schedule got a 5xx: the reproducer's signature.
Requests that got no HTTP answer at all (transport errors, timeouts) are counted apart:
a variant with some of those and no 5xx is *degraded*, which does not count as the
reproducer reproducing, and does not count as clean either. Seed requests are set-up,
not the experiment: the harness retries them and counts them apart. A variant *errors*
when any of its trials could not be carried out (its server did not start, seeding
failed): the harness then cannot say what it would have done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from harness.errors import ExitCode
from harness.results import (
    ExceptionCount,
    Observed,
    RequestRecord,
    TrialResult,
    VariantSummary,
    Verdict,
    VerdictKind,
)
from harness.variant import Expectation

_EXIT_PRIORITY = (
    ("regression", ExitCode.REGRESSION),
    ("error", ExitCode.HARNESS_ERROR),
    ("silent", ExitCode.SILENT),
)


def judge(
    expectations: Mapping[str, Expectation], trials: Sequence[TrialResult]
) -> tuple[tuple[VariantSummary, ...], tuple[Verdict, ...], ExitCode]:
    """Summaries and verdicts of every variant (in the mapping's order), and the run's exit code."""
    summaries = tuple(summarise(variant, trials) for variant in expectations)
    verdicts = tuple(decide(summary, expectations[summary.variant]) for summary in summaries)
    return summaries, verdicts, exit_code(verdicts)


def summarise(variant: str, trials: Iterable[TrialResult]) -> VariantSummary:
    own = [trial for trial in trials if trial.variant == variant]
    schedule = [r for trial in own for r in trial.records if r.phase == "schedule"]
    seed = [r for trial in own for r in trial.records if r.phase == "seed"]
    failed = [trial.trial for trial in own if trial.error is None and _failed(trial)]

    def count(outcome: str) -> int:
        return sum(1 for r in schedule if r.outcome == outcome)

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
    )


def group_exceptions(records: Iterable[RequestRecord]) -> tuple[ExceptionCount, ...]:
    """Server-side exceptions grouped by type and message, most frequent first."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for record in records:
        for exc in record.exceptions:
            groups.setdefault((exc.type, exc.message), []).append((record.request_id, exc.traceback))
    counts = [
        ExceptionCount(type=kind, message=message, count=len(seen), first_request_id=seen[0][0], traceback=seen[0][1])
        for (kind, message), seen in groups.items()
    ]
    return tuple(sorted(counts, key=lambda c: -c.count))


def decide(summary: VariantSummary, expected: Expectation) -> Verdict:
    """Hold one variant's summary to what the scenario expects of it."""
    name, trials, failed = summary.variant, summary.trials, summary.failed_trials
    if not trials:
        return Verdict(
            variant=name, expected=expected, observed="error", kind="error", reason=f"{name}: no trial was run"
        )
    if summary.error_trials:
        reason = f"{name}: {summary.error_trials} of {trials} trials could not be run; see the trial errors"
        return Verdict(variant=name, expected=expected, observed="error", kind="error", reason=reason)
    unanswered = summary.transport_errors + summary.timeouts
    observed: Observed = "fails" if failed else "degraded" if unanswered else "clean"
    failures = (
        f"{summary.server_errors} of {summary.requests} requests returned 5xx, "
        f"in {failed} of {trials} trials ({failed / trials:.0%})"
    )
    if summary.exceptions:
        top = summary.exceptions[0]
        failures += f"; most common: {_short_type(top.type)}: {top.message} ({top.count}x)"
    kind: VerdictKind
    if expected == "fails" and failed:
        kind, reason = "met", f"{name} failed as expected: {failures}"
        if failed < trials:
            reason += f"; {trials - failed} of {trials} trials saw no failure at all, so one trial alone can miss it"
    elif expected == "fails":
        kind = "silent"
        reason = (
            f"{name} was expected to fail but no request of its {trials} trials returned a 5xx: "
            "the reproducer went silent on this stack and schedule"
        )
    elif failed:
        kind, reason = "regression", f"{name} was expected to be clean but {failures}"
    elif unanswered:
        kind = "regression"
        reason = f"{name} was expected to be clean but {unanswered} of {summary.requests} requests got no answer"
    else:
        kind, reason = "met", f"{name} was clean as expected: {summary.requests} requests in {trials} trials, no 5xx"
    if unanswered:
        reason += f" ({summary.transport_errors} transport errors and {summary.timeouts} timeouts, counted apart)"
    return Verdict(variant=name, expected=expected, observed=observed, kind=kind, reason=reason)


def exit_code(verdicts: Sequence[Verdict]) -> ExitCode:
    kinds = {verdict.kind for verdict in verdicts}
    return next((code for kind, code in _EXIT_PRIORITY if kind in kinds), ExitCode.OK)


def _failed(trial: TrialResult) -> bool:
    return any(r.phase == "schedule" and r.outcome == "server-error" for r in trial.records)


def _short_type(qualified: str) -> str:
    return qualified.rsplit(".", 1)[-1]
