"""How well ``harness sweep`` estimates its wall time: estimate against measurement, cell by cell.

Usage: python benchmarks/sweep_estimate.py [SWEEP_OPTIONS ...]
  (default: --intervals 0.25,1 --in-flight 1,10,40 --trials 5 --confirm 0)

Runs one sweep with these options in a temporary folder, then prints for each cell run its
estimated and measured seconds and their ratio, and the same for the whole sweep. The
machine may be shared with other work: say so beside any figure quoted from here.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.config import builtin_config
from harness.grid import SweepPlan
from harness.results import SWEEP_FILE, read_sweep

DEFAULT_OPTIONS = ("--intervals", "0.25,1", "--in-flight", "1,10,40", "--trials", "5", "--confirm", "0")


def main(options: list[str]) -> None:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-m", "harness", "sweep", *options, "--out", out],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        elapsed = time.perf_counter() - start
        [path] = Path(out).glob(f"*/{SWEEP_FILE}")
        sweep = read_sweep(path)
    settings = sweep.settings
    plan = SweepPlan(
        settings=settings, variants=tuple(builtin_config().get_variants(list(sweep.variants))), sweep_dir=path.parent
    )
    for cell in sweep.cells:
        trials = settings.trials if cell.stage == "grid" else settings.confirm_trials
        estimate = math.ceil(trials / settings.jobs) * plan.trial_seconds(cell.cell)
        print(
            f"{cell.stage} {cell.cell.in_flight} in flight every {cell.cell.interval:g}: estimated {estimate:.1f} s, "
            f"measured {cell.duration:.1f} s (x{cell.duration / estimate:.2f})"
        )
    print(
        f"sweep: estimated {sweep.estimated_seconds:.0f} s (the grid and one confirmation, if any), cells measured "
        f"{sum(c.duration for c in sweep.cells):.1f} s, the command {elapsed:.1f} s, exit code {completed.returncode}"
    )


if __name__ == "__main__":
    main(sys.argv[1:] or list(DEFAULT_OPTIONS))
