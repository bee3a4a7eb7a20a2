"""Wall time of the two CI commands: ``nox -s scenarios`` and ``harness run --scenario burst --confidence 0.99``.

Usage: python benchmarks/ci_figures.py [REPEATS]   (default 1; run from the repository root)

``nox -s scenarios`` runs with a fresh virtualenv (``--reuse-venv no``), as on a fresh CI
machine, so its time includes installing the project; the pytest part alone is printed
too. Prints each run's wall time and exit code, then the medians.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.results import read_results


def main(repeats: int) -> None:
    nox_times, confidence_times = [], []
    for number in range(1, repeats + 1):
        with tempfile.TemporaryDirectory() as envdir:
            elapsed, completed = _timed(["nox", "-s", "scenarios", "--reuse-venv", "no", "--envdir", envdir])
        nox_times.append(elapsed)
        pytest_line = re.findall(r"=+ (.* in [\d.]+s.*) =+", completed.stdout)
        print(
            f"nox -s scenarios, run {number}: {elapsed:.1f} s, exit code {completed.returncode}; "
            f"pytest: {pytest_line[-1] if pytest_line else '(no summary line)'}",
            flush=True,
        )
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "-m", "harness", "run", "--scenario", "burst", "--confidence", "0.99"]
            elapsed, completed = _timed([*command, "--out", out])
            [path] = Path(out).glob("*/results.json")
            result = read_results(path)
        confidence_times.append(elapsed)
        print(
            f"harness run --scenario burst --confidence 0.99, run {number}: {elapsed:.1f} s, "
            f"exit code {completed.returncode}, {len(result.trials) // len(result.variants)} trials per variant; "
            + "; ".join(f"{v.variant}: {v.kind}" for v in result.verdicts),
            flush=True,
        )
    print(
        f"median over {repeats}: nox -s scenarios {statistics.median(nox_times):.1f} s; "
        f"harness run --scenario burst --confidence 0.99 {statistics.median(confidence_times):.1f} s"
    )


def _timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start, completed


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
