"""Wall time of the default ``harness run`` (both variants, the default scenario).

Usage: python benchmarks/default_run.py [REPEATS]   (default 5)
Prints each run's wall time and exit code, then the median.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time


def main(repeats: int) -> None:
    times = []
    for number in range(1, repeats + 1):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            completed = subprocess.run(
                [sys.executable, "-m", "harness", "run", "--out", out],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
            )
            elapsed = time.perf_counter() - start
        times.append(elapsed)
        print(f"run {number}: {elapsed:.2f} s, exit code {completed.returncode}", flush=True)
    print(
        f"default harness run: median {statistics.median(times):.2f} s over {repeats} runs "
        f"(min {min(times):.2f} s, max {max(times):.2f} s)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
