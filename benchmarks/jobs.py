"""What ``harness run --jobs N`` costs and buys: wall time, failure rates and timing distortion.

Usage: python benchmarks/jobs.py [JOBS ...]   (default: 1 2 3)

For each N, one run of tutorial-tabs (40 trials) and one of burst (10 trials), both
variants, N trials side by side. Prints per run: wall time, the unpatched build's failed
trials and 5xx requests with 95% intervals, how late requests left against their planned
offsets (the client falling behind its schedule), and the patched build's response times
(the server falling behind). One run per figure; the machine may be shared, so say so.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _figures import share

from harness.results import RequestRecord, RunResult, read_results

RUNS = (("tutorial-tabs", 40), ("burst", 10))


def main(jobs: list[int]) -> None:
    for scenario, trials in RUNS:
        for n in jobs:
            result, elapsed, code = _run(scenario, trials, n)
            print(f"{scenario} --trials {trials} --jobs {n}: {elapsed:.1f} s, exit code {code}; {_figures(result)}")
            sys.stdout.flush()


def _run(scenario: str, trials: int, jobs: int) -> tuple[RunResult, float, int]:
    with tempfile.TemporaryDirectory() as out:
        command = ["-m", "harness", "run", "--scenario", scenario, "--trials", str(trials), "--jobs", str(jobs)]
        start = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, *command, "--out", out], capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        elapsed = time.perf_counter() - start
        [path] = Path(out).glob("*/results.json")
        return read_results(path), elapsed, completed.returncode


def _figures(result: RunResult) -> str:
    unpatched = result.summaries[0]
    scheduled = [r for t in result.trials for r in t.records if r.phase == "schedule"]
    lateness = [r.sent_at - (r.planned_offset or 0.0) for r in scheduled]
    answered = [_duration(r) for r in scheduled if r.variant == "patched" and r.completed_at is not None]
    return (
        f"unpatched failed {share(unpatched.failed_trials, unpatched.trials)} trials, "
        f"{share(unpatched.server_errors, unpatched.requests)} requests; "
        f"send lateness median {_ms(statistics.median(lateness))}, p95 {_ms(_p95(lateness))}, "
        f"max {_ms(max(lateness))}; "
        f"patched response time median {_ms(statistics.median(answered))}, p95 {_ms(_p95(answered))}"
    )


def _duration(record: RequestRecord) -> float:
    return (record.completed_at or record.sent_at) - record.sent_at


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1, 2, 3])
