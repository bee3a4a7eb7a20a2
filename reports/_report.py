"""One run's report: the verdict first, then counts, exceptions, timelines, scenario, environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.diagnosis import CAUSE_WORDS
from harness.errors import ExitCode
from harness.reports._lanes import ROW, thread_lanes
from harness.reports._render import render, write_page
from harness.reports._timeline import GUTTER, WIDTH, trial_timelines
from harness.results import RunResult, VariantSummary, Verdict
from harness.summary import describe_schedule, describe_seed, describe_stopping_rule, format_rate, missing_evidence

REPORT_FILE = "report.html"
OPEN_TIMELINES = 4  # the first trials with a failure open; the rest stay one click away

_KIND_WORDS = {
    "met": "as expected",
    "regression": "regression",
    "silent": "silent reproducer",
    "error": "could not run",
    "undecided": "undecided",
}
_OUTCOME_WORDS = {
    "ok": "2xx",
    "client-error": "4xx",
    "server-error": "5xx",
    "transport-error": "transport error",
    "timeout": "timeout",
    "interrupted": "interrupted",
}
_BANNERS = {ExitCode.OK: "ok", ExitCode.REGRESSION: "bad", ExitCode.SILENT: "silent", ExitCode.UNDECIDED: "undecided"}


@dataclass(frozen=True, kw_only=True)
class _ExceptionGroup:
    type: str
    message: str
    counts: dict[str, int]
    first_request_id: str
    traceback: str


def render_report(result: RunResult) -> str:
    """The report of one run as a self-contained HTML page."""
    summaries = {summary.variant: summary for summary in result.summaries}
    timelines = trial_timelines(result.trials, result.variants)
    axes = {t.trial: t.axis for t in timelines}
    threads = {(t.trial, t.variant): thread_lanes(t, axes[t.trial]) for t in result.trials}
    opened = {t.trial for t in timelines if t.failed}
    opened = set(sorted(opened)[:OPEN_TIMELINES] or [t.trial for t in timelines[:1]])
    return render(
        "report.html.j2",
        result=result,
        title=f"{result.scenario.name}: {result.exit_code.meaning}",
        verdicts=[(verdict, summaries[verdict.variant]) for verdict in result.verdicts],
        format_rate=format_rate,
        headline=_headline(result.verdicts),
        banner=_BANNERS.get(result.exit_code, "error"),
        kind_words=_KIND_WORDS,
        outcome_words=_OUTCOME_WORDS,
        schedule=describe_schedule(result.scenario),
        rule=None if result.confidence is None else describe_stopping_rule(result.confidence),
        seed=describe_seed(result.scenario),
        missing=missing_evidence(result),
        exceptions=_group_exceptions(result.summaries),
        timelines=timelines,
        threads=threads,
        row=ROW,
        failures={(t.trial, t.variant): [r for r in t.records if r.diagnosis] for t in result.trials},
        cause_words=CAUSE_WORDS,
        opened=opened,
        width=WIDTH,
        gutter=GUTTER,
        trial_errors=[trial for trial in result.trials if trial.error],
        unmatched=sum(len(trial.unmatched_exceptions) for trial in result.trials),
    )


def write_report(result: RunResult, path: Path) -> Path:
    """Render ``result`` to ``path`` (atomically) and return the path."""
    return write_page(path, render_report(result))


def _headline(verdicts: tuple[Verdict, ...]) -> str:
    broken = [v for v in verdicts if v.kind != "met"]
    if not broken:
        return "Every variant did what was expected of it."
    return "; ".join(f"{_KIND_WORDS[v.kind].upper()}: {v.variant}" for v in broken)


def _group_exceptions(summaries: tuple[VariantSummary, ...]) -> list[_ExceptionGroup]:
    groups: dict[tuple[str, str], _ExceptionGroup] = {}
    for summary in summaries:
        for exc in summary.exceptions:
            group = groups.setdefault(
                (exc.type, exc.message),
                _ExceptionGroup(
                    type=exc.type,
                    message=exc.message,
                    counts={},
                    first_request_id=exc.first_request_id,
                    traceback=exc.traceback,
                ),
            )
            group.counts[summary.variant] = exc.count
    return sorted(groups.values(), key=lambda g: -sum(g.counts.values()))
