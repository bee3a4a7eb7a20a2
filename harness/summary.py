"""The plain-text summary printed at the end of a run."""

from __future__ import annotations

from collections.abc import Sequence

from harness.diagnosis import CAUSE_WORDS
from harness.results import Rate, RunResult, VariantSummary
from harness.scenario import Scenario

_COLUMNS = (
    "variant",
    "expected",
    "failed trials",
    "per trial (95% CI)",
    "requests",
    "2xx",
    "4xx",
    "5xx",
    "per request (95% CI)",
    "transport",
    "timeouts",
    "verdict",
)


def describe_schedule(scenario: Scenario) -> str:
    schedule = scenario.schedule
    shape = {
        "staggered": f"{schedule.requests} requests {schedule.interval * scenario.time_scale:g} s apart",
        "burst": f"{schedule.requests} requests at once",
        "waves": (
            f"{schedule.requests} requests in waves of {schedule.wave_size}, "
            f"{schedule.interval * scenario.time_scale:g} s apart"
        ),
    }[schedule.kind]
    return f"{shape} on {schedule.path}, time scale {scenario.time_scale:g}"


def format_summary(result: RunResult) -> str:
    verdicts = {verdict.variant: verdict for verdict in result.verdicts}
    rows = [_COLUMNS] + [
        _row(summary, verdicts[summary.variant].expected, verdicts[summary.variant].kind)
        for summary in result.summaries
    ]
    lines = [f"scenario {result.scenario.name}: {describe_schedule(result.scenario)}"]
    if not result.complete:
        lines.append("INCOMPLETE RUN: the figures below cover only the trials that ran")
    if result.confidence is not None:
        undecided = [v.variant for v in result.verdicts if v.kind == "undecided"]
        lines.append(
            f"held to {result.confidence:.0%} confidence: "
            + (f"not decided within the limits: {', '.join(undecided)}" if undecided else "every verdict decided")
        )
    lines += [
        *format_table(rows),
        "",
        *(verdict.reason for verdict in result.verdicts),
    ]
    exceptions = [(s.variant, e) for s in result.summaries for e in s.exceptions]
    if exceptions:
        lines += ["", "server-side exceptions:"]
        lines += [f"  {variant}: {e.count}x {e.type}: {e.message}" for variant, e in exceptions]
    causes = [(s.variant, c) for s in result.summaries for c in s.causes]
    if causes:
        lines += ["", "causes of the 5xx, from the server-side trace:"]
        for variant, cause in causes:
            lines += [f"  {variant}: {cause.count}x {CAUSE_WORDS[cause.kind]}", f"    e.g. {cause.example}"]
    seed_errors = [s for s in result.summaries if s.seed_server_errors]
    for s in seed_errors:
        lines.append(
            f"  ({s.variant}: {s.seed_server_errors} of {s.seed_requests} seed requests returned 5xx and were retried)"
        )
    died = [t for t in result.trials if t.server_exit_code is not None]
    if died:
        lines += ["", "servers that died during their trial (their unanswered requests count as transport errors):"]
        lines += [f"  {t.variant} trial {t.trial}: exit code {t.server_exit_code}" for t in died]
    errors = [t for t in result.trials if t.error]
    if errors:
        lines += ["", "trials that could not be carried out:"]
        lines += [f"  {t.variant} trial {t.trial}: {t.error.splitlines()[0]}" for t in errors if t.error]
        lines += ["", f"the first of them in full ({errors[0].variant} trial {errors[0].trial}):", str(errors[0].error)]
    return "\n".join(lines)


def _row(summary: VariantSummary, expected: str, kind: str) -> tuple[str, ...]:
    return (
        summary.variant,
        expected,
        f"{summary.failed_trials}/{summary.trials}",
        format_rate(summary.trial_failure_rate),
        str(summary.requests),
        str(summary.ok),
        str(summary.client_errors),
        str(summary.server_errors),
        format_rate(summary.request_failure_rate),
        str(summary.transport_errors),
        str(summary.timeouts),
        kind,
    )


def format_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines of left-aligned columns, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def format_rate(rate: Rate) -> str:
    """A failure rate and its 95% interval, as the summary and the report show it."""
    if rate.estimate is None:
        return "-"
    return f"{rate.estimate:.0%} ({rate.low:.0%}-{rate.high:.0%})"
