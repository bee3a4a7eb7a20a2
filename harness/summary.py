"""The plain-text summaries printed at the end of a run and of a sweep."""

from __future__ import annotations

from collections.abc import Sequence

from harness.diagnosis import CAUSE_WORDS
from harness.results import (
    DEFAULT_LEAK_WAIT,
    CellResult,
    ExploreResult,
    Rate,
    RunResult,
    SweepCell,
    SweepResult,
    TrialResult,
    VariantSummary,
)
from harness.scenario import Explore, HttpRequest, Scenario, Seed
from harness.search import counted, describe_steps
from harness.stats import clopper_pearson_lower, false_clean_chance, pairs_needed
from harness.terminal import first_line, printable
from harness.trace import traces_orm
from harness.variant import DEFAULT_DATABASE, Database

CONFIDENCE_95 = 0.95
DATABASE_NAMES: dict[Database, str] = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
LEAK_WORDS = (
    f"still open at the database server {DEFAULT_LEAK_WAIT:g} s after the trial's last response, before its app stopped"
)
UNCLOSED_WORDS = "opened and never closed or given back to its pool, by the app's own trace"

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
    return f"{shape} on {describe_request(schedule.request)}, time scale {scenario.time_scale:g}"


def describe_fail_on(scenario: Scenario) -> str:
    """``5xx, leak (more than 2 connections never closed)``: what fails a trial, for harness config and the report."""
    kinds = ", ".join(scenario.fail_on)
    if "leak" in scenario.fail_on and scenario.leak_threshold:
        kinds += f" (more than {scenario.leak_threshold} connections never closed)"
    return kinds


def describe_request(request: HttpRequest) -> str:
    """``/slowusers/`` for a plain GET, else ``POST /orders/``."""
    return request.path if request.method == "GET" else f"{request.method} {request.path}"


def describe_seed(scenario: Scenario) -> str:
    """What a trial creates before its schedule, in words."""
    seed = scenario.seed
    if isinstance(seed, Seed):
        return f"{seed.users} users with {seed.items_per_user} items each, through the tutorial's API"
    if not seed:
        return "nothing"
    return "; ".join(f"{step.repeat} x {step.method} {step.path}" for step in seed)


def missing_evidence(result: RunResult) -> list[str]:
    """What the run could not see, each in a sentence: the report and the summary say so instead of showing nothing."""
    if result.url is not None:
        return [
            f"Server-side exceptions and the thread and connection trace: {result.url} is a server the harness did "
            "not start, so its probe is not inside it; a 5xx is known only by its status.",
            "A fresh server and database for each trial: every trial went to the same server.",
        ]
    if not result.trace:
        return ["The thread and connection trace (--no-trace): no 5xx has a diagnosed cause."]
    ran = [t for t in result.trials if t.error is None and t.pid is not None]
    untraced = _variants_of(result, [t for t in ran if not traces_orm(t.trace)])
    missing = []
    if untraced:
        missing.append(
            f"The connection trace for {', '.join(untraced)}: the app made no Peewee database and no SQLAlchemy "
            "engine, so its 5xx are grouped by their server-side exception, with no diagnosed cause."
        )
    unseen = [t for t in ran if t.unclosed_connections is None]
    if "leak" in result.scenario.fail_on and unseen:
        trials = ", ".join(f"{v} {sum(1 for t in unseen if t.variant == v)}" for v in _variants_of(result, unseen))
        missing.append(
            f"Leaks (fail_on 'leak') in the trials whose trace shows no connections, or was cut at its limit "
            f"({trials}): those trials could not fail on a leak."
        )
    return missing


def _variants_of(result: RunResult, trials: Sequence[TrialResult]) -> list[str]:
    return sorted({t.variant for t in trials}, key=result.variants.index)


def format_summary(result: RunResult) -> str:
    verdicts = {verdict.variant: verdict for verdict in result.verdicts}
    if result.explore:
        rows = [_EXPLORE_COLUMNS] + [
            _explore_row(searched, verdicts[searched.variant].expected, verdicts[searched.variant].kind)
            for searched in result.explore
        ]
    else:
        rows = [_COLUMNS] + [
            _row(summary, verdicts[summary.variant].expected, verdicts[summary.variant].kind)
            for summary in result.summaries
        ]
    lines = [f"scenario {result.scenario.name}: {describe_schedule(result.scenario)}"]
    if result.explore:
        lines.append(f"explore mode: {describe_explore(result.explore[0], result.explore[0].requests)}")
    if result.database_server:
        lines.append(f"PostgreSQL: {result.database_server}; a fresh database for each build in each trial")
        limit, reserved = (
            result.environment.get(f"postgres_{k}") for k in ("max_connections", "superuser_reserved_connections")
        )
        if limit and reserved:  # recorded since the stock limits; a run written before has none
            lines.append(f"  max_connections {limit}, the last {reserved} for superusers only")
    if not result.complete:
        lines.append("INCOMPLETE RUN: the figures below cover only the trials that ran")
    if result.confidence is not None:
        undecided = [v.variant for v in result.verdicts if v.kind == "undecided"]
        lines.append(
            f"held to {result.confidence:.0%} confidence: "
            + (f"not decided within the limits: {', '.join(undecided)}" if undecided else "every verdict decided")
        )
        lines.append(f"  ({describe_stopping_rule(result.confidence)})")
    lines += [
        *format_table(rows),
        "",
        *(verdict.reason for verdict in result.verdicts),
    ]
    for searched in result.explore:
        if searched.steps:
            lines += ["", f"{searched.variant}, the failing schedule shrunk, step by step:"]
            lines += [f"  {line}" for line in describe_steps(searched.steps)]
    exceptions = [(s.variant, e) for s in result.summaries for e in s.exceptions]
    if exceptions:
        lines += ["", "server-side exceptions:"]
        lines += [f"  {variant}: {e.count}x {e.type}: {first_line(e.message)}" for variant, e in exceptions]
    causes = [(s.variant, c) for s in result.summaries for c in s.causes]
    if causes:
        lines += ["", "causes of the 5xx, from the server-side trace:"]
        for variant, cause in causes:
            lines += [f"  {variant}: {cause.count}x {CAUSE_WORDS[cause.kind]}", f"    e.g. {first_line(cause.example)}"]
    lines += format_connections(result)
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
    missing = missing_evidence(result)
    if missing:
        lines += ["", "evidence this run could not collect:", *(f"  {sentence}" for sentence in missing)]
    return printable("\n".join(lines))  # exception messages and log lines come from the app


def format_connections(result: RunResult) -> list[str]:
    """Each build's connections: on PostgreSQL the server's count (most at once, left open), and the app's unclosed."""
    if not any(s.peak_connections is not None or s.unclosed_connections for s in result.summaries):
        return []
    # Once one build has figures worth a section, every build whose connections were counted is shown beside it:
    # the fixed build's 0 is the comparison a reader wants.
    counted = [
        s
        for s in result.summaries
        if s.peak_connections is not None or s.unclosed_connections is not None or s.most_checked_out is not None
    ]
    width = max(len(s.variant) for s in counted)
    lines = ["", "connections of each build:"]
    for s in counted:
        lines.append(f"  {s.variant:<{width}}  {describe_connections(s)}")
    legend = [f"left open: {LEAK_WORDS}"] if any(s.peak_connections is not None for s in counted) else []
    lines.append(f"  ({'; '.join([*legend, f'never closed: {UNCLOSED_WORDS}'])})")
    return lines


def describe_connections(summary: VariantSummary) -> str:
    """The figures :func:`format_connections` prints for one build, in one line."""
    parts = []
    if summary.peak_connections is not None:
        parts.append(f"at most {summary.peak_connections} open at once (PostgreSQL)")
        parts.append(describe_left_open(summary))
    if summary.most_checked_out is not None:
        parts.append(f"held by the app: at most {summary.most_checked_out} at once")
    if summary.unclosed_connections is not None:
        parts.append(f"never closed by the app: at most {summary.unclosed_connections} in a trial")
    return "; ".join(parts)


def describe_left_open(summary: VariantSummary) -> str:
    """A build's connections left open after its trials (:data:`LEAK_WORDS`), for the summary and the report."""
    if summary.leaking_trials:
        # Only a pool keeps what the app gave back open; without one, the server was still closing them.
        kept = (
            " (idle in its pool: the app gave every one back)"
            if summary.pooled and summary.unclosed_connections == 0
            else ""
        )
        return (
            f"left open in {summary.leaking_trials} of {summary.trials} trials, at most {summary.leaked_connections}"
            + kept
        )
    return "none left open" if summary.leaked_connections is not None else "left open: not counted"


def describe_stopping_rule(confidence: float) -> str:
    """``--confidence``'s rule in words (:func:`harness.stats.clean_is_decided`), for the summary and the report."""
    pairs = pairs_needed(confidence)
    return (
        "a build expected to fail is decided by its first failure; a build expected to be clean, once each build "
        f"expected to fail has failed {pairs} trials whose trial of the same number it passed: a build failing at "
        f"least as often would show that with chance at most 1 in {round(1 / false_clean_chance(pairs))}, however "
        "often the harness looks"
    )


_EXPLORE_COLUMNS = ("variant", "expected", "schedules", "failed in", "shrunk to", "replayed", "verdict")


def _explore_row(searched: ExploreResult, expected: str, kind: str) -> tuple[str, ...]:
    return (
        searched.variant,
        expected,
        f"{searched.schedules:,}" + (" (all)" if searched.exhausted else ""),
        "-" if searched.failed_schedule is None else f"schedule {searched.failed_schedule}",
        f"{counted(len(searched.shrunk_requests), 'request')}, {counted(searched.shrunk_deviations, 'deviation')}"
        if searched.steps
        else "-",
        {True: "yes", False: "NO", None: "-"}[searched.replayed],
        kind,
    )


def describe_explore(searched: ExploreResult | Explore, requests: int) -> str:
    """``PCT, depth 2, 2 requests a schedule``: how explore mode searches, or searched."""
    if searched.strategy == "pct":
        return f"PCT, depth {searched.depth}, {requests} requests a schedule"
    return f"every schedule with at most {searched.bound} deviations, {requests} requests a schedule"


def _row(summary: VariantSummary, expected: str, kind: str) -> tuple[str, ...]:
    return (
        summary.variant,
        expected,
        f"{summary.failed_trials}/{summary.trials}{describe_leak_trials(summary)}",
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


def describe_leak_trials(summary: VariantSummary) -> str:
    """`` (3 on a leak)`` after a build's failed trials when some failed on a leak (fail_on "leak"), else nothing."""
    return f" ({summary.leak_trials} on a leak)" if summary.leak_trials else ""


def format_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines of left-aligned columns, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def format_rate(rate: Rate) -> str:
    """A failure rate and its 95% interval, as the summary and the report show it."""
    if rate.estimate is None:
        return "-"
    return f"{rate.estimate:.0%} ({rate.low:.0%}-{rate.high:.0%})"


def format_sweep(result: SweepResult) -> str:
    """The sweep as text: per variant its failed trials per cell, then the confirmations and the winner."""
    settings = result.settings
    grid = {(c.cell.in_flight, c.cell.interval, c.cell.database): c for c in result.cells if c.stage == "grid"}
    lines = [
        f"sweep: {settings.waves} waves per trial, time scale {settings.time_scale:g}, {settings.trials} trials per "
        f"cell, {settings.jobs} at a time; {len(grid)} of {settings.size} cells measured "
        f"in {result.duration:.1f} s (estimated {result.estimated_seconds:.0f} s)"
    ]
    if not result.complete:
        stopped = "--max-seconds was reached" if result.limit_reached else "it was interrupted"
        lines.append(f"INCOMPLETE SWEEP: {stopped}; the figures below cover the cells that ran")
    header = ["in flight \\ interval", *(f"{interval:g}" for interval in settings.intervals)]
    for index, variant in enumerate(result.variants):
        for database in settings.databases:
            rows = [header]
            for in_flight in settings.in_flight:
                row = [str(in_flight)]
                for interval in settings.intervals:
                    cell = grid.get((in_flight, interval, database))
                    rate = cell.summaries[index].trial_failure_rate if cell else None
                    mark = "*" if cell and cell.cell == result.winner else ""
                    row.append(f"{rate.count}/{rate.total}{mark}" if rate else "-")
                rows.append(row)
            widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
            on = f" on {DATABASE_NAMES[database]}" if len(settings.databases) > 1 else ""
            lines += ["", f"{variant}{on}: failed trials per cell (5xx in a request of the trial)"]
            lines += ["  " + "  ".join(c.rjust(width) for c, width in zip(row, widths, strict=True)) for row in rows]
    confirmations = [c for c in result.cells if c.stage == "confirm"]
    if confirmations:
        lines += ["", "confirmations of the cheapest detecting cells:"]
        lines += [f"  {describe_cell(c.cell)}: {_outcome(c, result.variants)}" for c in confirmations]
    lines.append("")
    if result.winner is None:
        lines.append(f"no cell detected: none caught the expected failures in {settings.target:.0%} of its trials")
    else:
        winning = [c for c in result.cells if c.cell == result.winner]
        lines.append(
            f"winner: {describe_cell(result.winner)}, {settings.waves} waves ({winning[0].requests} requests per "
            f"trial, cost {winning[0].cost:g} request-seconds); "
            + "; ".join(f"{c.stage}: {_outcome(c, result.variants)}" for c in winning)
        )
    return "\n".join(lines)


def describe_cell(cell: SweepCell) -> str:
    on = f" on {DATABASE_NAMES[cell.database]}" if cell.database != DEFAULT_DATABASE else ""
    return f"{cell.in_flight} in flight every {cell.interval:g} tutorial-seconds{on}"


def _outcome(cell: CellResult, variants: tuple[str, ...]) -> str:
    """Failed trials per variant, with the exact 95% lower bound of the rate of a variant that always failed."""
    parts = []
    for variant, summary in zip(variants, cell.summaries, strict=True):
        rate = summary.trial_failure_rate
        part = f"{variant} {rate.count}/{rate.total}"
        if rate.count and rate.count == rate.total:
            part += f" (rate >= {detection_lower_bound(rate):.1%}, 95%)"
        parts.append(part)
    return ", ".join(parts) + (" - detects" if cell.detects else " - does not detect")


def detection_lower_bound(rate: Rate) -> float:
    """The exact (Clopper-Pearson) one-sided 95% lower bound of a per-trial failure rate."""
    return clopper_pearson_lower(rate.count, rate.total, 1 - CONFIDENCE_95)
