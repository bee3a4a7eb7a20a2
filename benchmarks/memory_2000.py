"""Peak memory of the harness itself as a scenario grows from 200 to 2,000 requests.

Usage: python benchmarks/memory_2000.py

Runs ``harness run`` (both variants, one trial, /slowusers/ in waves of 200 requests)
once per size, each in a fresh Python process, and prints that process's peak resident
set size (``ru_maxrss``, which counts the harness and not its uvicorn children, whose
memory is their own), its wall time, and whether every request was recorded. The
unpatched build's 5xx carry full tracebacks, so this is the heavy case.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

SIZES = (200, 2000)
_CHILD = """
import resource, sys, time
from harness.cli import main
start = time.perf_counter()
code = main(sys.argv[1:])
elapsed = time.perf_counter() - start
print(f"BENCH {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} {elapsed:.2f} {code}", file=sys.stderr)
"""


def measure(requests: int, folder: Path) -> tuple[float, float, int, int]:
    """Peak RSS in MiB, seconds, exit code, and schedule requests recorded."""
    scenario = folder / f"waves-{requests}.toml"
    scenario.write_text(
        f'name = "waves-{requests}"\ntrials = 1\ntime_scale = 0.05\n[seed]\n'
        f'[schedule]\nkind = "waves"\nrequests = {requests}\nwave_size = 200\ninterval = 1.0\n'
    )
    out = folder / f"out-{requests}"
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, "run", "--scenario", str(scenario), "--out", str(out)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    line = next(line for line in completed.stderr.splitlines() if line.startswith("BENCH "))
    peak_kib, seconds, code = line.split()[1:]
    [results] = out.glob("*/results.json")
    records = json.loads(results.read_text())["trials"]
    recorded = sum(1 for trial in records for r in trial["records"] if r["phase"] == "schedule")
    return int(peak_kib) / 1024, float(seconds), int(code), recorded


def main() -> None:
    peaks = {}
    with tempfile.TemporaryDirectory() as folder:
        for requests in SIZES:
            peak, seconds, code, recorded = measure(requests, Path(folder))
            peaks[requests] = peak
            print(
                f"{requests} requests per variant: harness peak RSS {peak:.1f} MiB, {seconds:.1f} s, "
                f"exit code {code}, {recorded} of {2 * requests} schedule requests recorded",
                flush=True,
            )
    small, large = (peaks[size] for size in SIZES)
    print(f"peak RSS ratio {SIZES[1]}/{SIZES[0]} requests: {large / small:.2f} (requests ratio {SIZES[1] // SIZES[0]})")


if __name__ == "__main__":
    main()
