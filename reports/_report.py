"""One run's report: the verdict first, then counts, exceptions, timelines, scenario, environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.diagnosis import CAUSE_WORDS
from harness.errors import ExitCode
from harness.reports._connections import CHART_TRIALS, connection_charts, describe_trial
from harness.reports._lanes import ROW, ThreadLanes, thread_lanes
from harness.reports._render import render, stream, write_page
from harness.reports._timeline import GUTTER, WIDTH, TrialTimeline, trial_timelines
from harness.results import RunResult, VariantSummary, Verdict
from harness.search import request_name
from harness.summary import (
    DATABASE_NAMES,
    LEAK_WORDS,
    UNCLOSED_WORDS,
    describe_explore,
    describe_fail_on,
    describe_leak_trials,
    describe_left_open,
    describe_schedule,
    describe_seed,
    describe_stopping_rule,
    format_rate,
    missing_evidence,
)
from harness.variant import DEFAULT_DATABASE

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
    return render("report.html.j2", **_context(result))


def write_report(result: RunResult, path: Path) -> Path:
    """Render ``result`` to ``path`` (atomically, as it renders) and return the path."""
    return write_page(path, stream("report.html.j2", **_context(result)))


def _context(result: RunResult) -> dict[str, Any]:
    summaries = {summary.variant: summary for summary in result.summaries}
    timelines = trial_timelines(result.trials, result.variants)
    axes = {t.trial: t.axis for t in timelines}
    summed_up = _summed_up(timelines)
    trials = {(t.trial, t.variant): t for t in result.trials}

    def threads(trial: int, variant: str) -> ThreadLanes | None:
        # Drawn when the page reaches them and then dropped: a long run's lanes are never all held at once.
        return thread_lanes(trials[trial, variant], axes[trial])

    opened = {t.trial for t in timelines if t.failed}
    opened = set(sorted(opened)[:OPEN_TIMELINES] or [t.trial for t in timelines[:1]])
    return dict(
        result=result,
        title=f"{result.scenario.name}: {result.exit_code.meaning}",
        verdicts=[(verdict, summaries[verdict.variant]) for verdict in result.verdicts],
        summaries=summaries,
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
        summed_up=summed_up,
        width=WIDTH,
        gutter=GUTTER,
        trial_errors=[trial for trial in result.trials if trial.error],
        unmatched=sum(len(trial.unmatched_exceptions) for trial in result.trials),
        # Against the user's server (--url) the harness does not know what it runs on.
        databases={v: DATABASE_NAMES[result.databases.get(v, DEFAULT_DATABASE)] for v in result.variants}
        if result.url is None
        else {},
        connections_counted=any(s.peak_connections is not None for s in result.summaries),
        describe_left_open=describe_left_open,
        describe_leak_trials=describe_leak_trials,
        describe_fail_on=describe_fail_on,
        connection_charts=connection_charts(result.trials, result.variants),
        describe_trial=describe_trial,
        chart_trials=CHART_TRIALS,
        leak_words=LEAK_WORDS,
        unclosed_words=UNCLOSED_WORDS,
        explore_how=describe_explore(result.explore[0], result.explore[0].requests) if result.explore else "",
        explored={searched.variant: searched for searched in result.explore},
        workers_of=lambda steps: sorted({step.worker for step in steps}),
        request_name=request_name,
    )


def _summed_up(timelines: list[TrialTimeline]) -> set[tuple[int, str]]:
    """The lanes told in one line rather than drawn: each build's clean trials after its first.

    A clean trial's drawing looks like the one before it, and a long run's report would
    grow by 150 kB with each; every trial with a failure, an error, anything but 2xx or
    connections left open is drawn in full: its lanes show which requests opened them.
    """
    drawn_clean: set[str] = set()
    summed_up = set()
    for timeline in timelines:
        for lane in timeline.lanes:
            clean = (
                lane.error is None
                and lane.server_exit_code is None
                and not lane.leaked_connections
                and all(b.outcome == "ok" for b in lane.bars)
            )
            if clean and lane.variant in drawn_clean:
                summed_up.add((timeline.trial, lane.variant))
            elif clean:
                drawn_clean.add(lane.variant)
    return summed_up


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
