"""How often one PCT schedule shows the tutorial's bug, and what a schedule costs, by requests per schedule.

Usage: python benchmarks/explore_pct.py [SEEDS] [SIZES]   (default: 200 seeds, sizes 2,3,4,10)

For each size n: one server of each built-in build in explore mode (traced, as a run is),
seeded as the runner does; then PCT schedules (depth 2, seeds 1..SEEDS) of n /slowusers/
requests through harness.explore's own Session. Prints, per build, the schedules that
failed, the median wall time of a schedule, and for unpatched in how many of the windows of
10 consecutive seeds (1-10, 2-11, ...) at least one schedule failed: "found within 10
schedules" in runs with different seeds.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

from harness.config import builtin_config
from harness.explore import Session
from harness.launcher import Server
from harness.scenario import load_scenario

BUILDS = ("unpatched", "patched", "recommended")


async def measure(build: str, requests: int, seeds: int) -> tuple[list[bool], list[float]]:
    scenario = load_scenario("burst")
    with tempfile.TemporaryDirectory() as folder:
        server = Server(builtin_config().variants[build], Path(folder), time_scale=scenario.time_scale, explore=True)
        try:
            async with Session(scenario, server, start_timeout=60) as session:
                steps = len((await session.run(range(requests), {"kind": "default"})).steps)
                failed, seconds = [], []
                for seed in range(1, seeds + 1):
                    chooser = {"kind": "pct", "seed": seed, "depth": 2, "steps": steps}
                    started = time.perf_counter()
                    record = await session.run(range(requests), chooser)
                    seconds.append(time.perf_counter() - started)
                    failed.append(record.failure is not None)
                return failed, seconds
        finally:
            server.stop()


def main(seeds: int, sizes: list[int]) -> None:
    for requests in sizes:
        for build in BUILDS:
            failed, seconds = anyio.run(measure, build, requests, seeds)
            line = (
                f"{requests:>2} requests  {build:<12} {sum(failed):>4}/{seeds} schedules failed, "
                f"{statistics.median(seconds) * 1000:6.1f} ms a schedule (median)"
            )
            if build == "unpatched":
                windows = [any(failed[start : start + 10]) for start in range(seeds - 9)]
                line += f"; failed within 10 schedules in {sum(windows)} of {len(windows)} windows of seeds"
            print(line, flush=True)


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 200,
        [int(n) for n in (sys.argv[2] if len(sys.argv) > 2 else "2,3,4,10").split(",")],
    )
