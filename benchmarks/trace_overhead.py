"""Does the server-side trace change what it observes? The unpatched build under burst, traced and not.

Usage: python benchmarks/trace_overhead.py [PAIRS]   (default: 40)

Runs PAIRS pairs of one-trial runs of the unpatched build under ``burst``, one with the
trace and one with ``--no-trace`` (the pipeline's ``trace=False``), alternating which goes
first, so drift on a shared machine falls on both alike. Prints for each: failed trials
and 5xx requests with Wilson 95% intervals, the mean 5xx per trial with a normal 95%
interval (requests of one trial are not independent, so this is the fairer comparison),
the median latency of the schedule's requests, and the wall time per trial; then the median of the
pairs' own with/without ratios, wall and latency, with its 95% interval (:func:`_figures.paired_ratio`).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _figures import paired_ratio, share

from harness.config import builtin_config
from harness.files import make_run_dir
from harness.pipeline import execute
from harness.plan import RunPlan
from harness.results import RequestRecord, TrialResult
from harness.scenario import load_scenario


def main(pairs: int) -> None:
    scenario = replace(load_scenario("burst"), trials=1)
    trials: dict[bool, list[TrialResult]] = {True: [], False: []}
    seconds: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as out:
        for pair in range(-1, pairs):  # pair -1 warms up (the harness's warm parent, the disk's cache): not counted
            for trace in (True, False) if pair % 2 == 0 else (False, True):
                plan = RunPlan(
                    scenario=scenario,
                    variants=(builtin_config().variants["unpatched"],),
                    run_dir=make_run_dir(Path(out), scenario.name),
                    trace=trace,
                )
                start = time.perf_counter()
                ran = execute(plan).trials
                if pair >= 0:
                    trials[trace] += ran
                    seconds[trace].append(time.perf_counter() - start)
            print(f"pair {pair + 1}/{pairs}", file=sys.stderr)
    for trace in (True, False):
        print(f"{'with the trace   ' if trace else 'without the trace'}: {_figures(trials[trace], seconds[trace])}")
    latencies = [
        (_median_latency(traced), _median_latency(plain)) for traced, plain in zip(*trials.values(), strict=True)
    ]
    print(
        f"with/without, pair by pair: wall {paired_ratio(list(zip(*seconds.values(), strict=True)))}; "
        f"median latency {paired_ratio(latencies)}"
    )


def _median_latency(trial: TrialResult) -> float:
    return statistics.median(r.completed_at - r.sent_at for r in trial.records if _answered(r))


def _answered(record: RequestRecord) -> bool:
    return record.phase == "schedule" and record.completed_at is not None


def _figures(trials: list[TrialResult], seconds: list[float]) -> str:
    per_trial = [sum(1 for r in t.records if r.phase == "schedule" and r.outcome == "server-error") for t in trials]
    requests = sum(1 for t in trials for r in t.records if r.phase == "schedule")
    failed = sum(1 for count in per_trial if count)
    mean = statistics.mean(per_trial)
    half = 1.96 * statistics.stdev(per_trial) / len(per_trial) ** 0.5
    latencies = [r.completed_at - r.sent_at for t in trials for r in t.records if _answered(r)]
    return (
        f"failed trials {share(failed, len(trials))}; 5xx requests {share(sum(per_trial), requests)}; "
        f"5xx per trial mean {mean:.1f} (95% CI {mean - half:.1f}-{mean + half:.1f}); "
        f"median latency {statistics.median(latencies) * 1000:.0f} ms; "
        f"median wall time per trial {statistics.median(seconds):.2f} s"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
