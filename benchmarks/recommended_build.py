"""Is the ``recommended`` build (``connection_context()`` in each endpoint's body) clean under concurrency?

Usage: python benchmarks/recommended_build.py [TRIALS] [SCENARIO ...]
(default: 20 trials of each of burst, tutorial-tabs and waves)

Runs the harness's pipeline on the three builds side by side, a fresh server per build and
trial, all on 127.0.0.1, and prints per build: failed trials, 5xx answers among the
schedule's requests, the most common server-side exception, and for a build that failed the
trace's diagnoses (cause kind, count, one example). From the trace it also counts Peewee's
autoconnects (a query on a thread whose connection was closed: the lazy ``items`` query in
response validation) and the connections still open when the server was stopped.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import tempfile
from pathlib import Path

from harness.config import builtin_config
from harness.pipeline import execute
from harness.plan import RunPlan
from harness.results import RunResult, TrialResult, VariantSummary
from harness.scenario import load_scenario

SCENARIOS = ("burst", "tutorial-tabs", "waves")
VARIANTS = tuple(builtin_config().get_variants(["unpatched", "patched", "recommended"]))


def run(scenario_name: str, trials: int) -> RunResult:
    scenario = dataclasses.replace(load_scenario(scenario_name), trials=trials)
    with tempfile.TemporaryDirectory(prefix="recommended-build-") as run_dir:
        return execute(RunPlan(scenario=scenario, variants=VARIANTS, run_dir=Path(run_dir)))


def connections(trials: list[TrialResult]) -> str:
    """Autoconnects, and connections opened but never closed, over the trials' traces."""
    auto = left_open = 0
    for trial in trials:
        opened = {e.connection for e in trial.trace if e.kind == "connect" and e.error is None}
        auto += sum(e.kind == "connect" and e.auto and e.error is None for e in trial.trace)
        left_open += len(opened - {e.connection for e in trial.trace if e.kind == "close"})
    return f"autoconnects {auto}, connections left open at shutdown {left_open}"


def describe(summary: VariantSummary, trials: list[TrialResult]) -> list[str]:
    top = max(summary.exceptions, key=lambda e: e.count, default=None)
    exception = f"{top.type}: {top.message} (x{top.count})" if top else "none"
    lines = [
        f"  {summary.variant:<12} failed trials {summary.failed_trials}/{summary.trials}, "
        f"5xx {summary.server_errors}/{summary.requests} requests "
        f"(seed 5xx {summary.seed_server_errors}, transport errors {summary.transport_errors}, "
        f"timeouts {summary.timeouts}); most common exception: {exception}",
        f"    trace: {connections(trials)}",
    ]
    for cause in summary.causes:
        lines.append(f"    cause {cause.kind} x{cause.count}, e.g. {cause.example}")
    return lines


def main(trials: int, scenarios: list[str]) -> None:
    print("$ python " + shlex.join(sys.argv), flush=True)
    for name in scenarios:
        result = run(name, trials)
        print(f"{name}: {result.trials_run} trials, {result.duration:.0f} s", flush=True)
        for summary, verdict in zip(result.summaries, result.verdicts, strict=True):
            own = [trial for trial in result.trials if trial.variant == summary.variant]
            print("\n".join(describe(summary, own)))
            print(f"    verdict {verdict.kind}: {verdict.reason}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20, sys.argv[2:] or list(SCENARIOS))
