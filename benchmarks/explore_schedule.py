"""What one explored schedule costs: the wall time of a schedule of 2 and of 10 /slowusers/ requests, in one server.

Usage: python benchmarks/explore_schedule.py [ROUNDS] [VARIANT]   (default: 50 unpatched)

Starts one server of VARIANT in explore mode (traced, as a run is), seeds it as the runner
does, then for each size runs ROUNDS schedules with the default chooser: begin, the
requests at once on their own connections (opened beforehand, as the runner's are), end.
Prints the median and the 10th and 90th percentiles of the wall time per schedule, from
before the begin to the end's answer, and how many schedules failed.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from harness.config import builtin_config
from harness.launcher import Server
from harness.runner import Recorder, seed_tutorial
from harness.scenario import Seed
from harness.server.explorer import BEGIN_PATH, END_PATH
from harness.server.probe import REQUEST_ID_HEADER


async def one_schedule(base_url: str, requests: int, tag: str) -> tuple[float, bool]:
    ids = [f"{tag}-{index}" for index in range(requests)]
    clients = [httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=60) for _ in range(requests + 1)]
    statuses: list[int] = []
    try:
        for each in clients:  # connected before the clock starts: the runner's connections are open too
            await each.get("/__harness/none")
        started = time.perf_counter()
        await clients[0].post(BEGIN_PATH, json={"requests": ids, "chooser": {"kind": "default"}})

        async def send(index: int) -> None:
            answer = await clients[index + 1].get("/slowusers/", headers={REQUEST_ID_HEADER: ids[index]})
            statuses.append(answer.status_code)

        async with anyio.create_task_group() as group:
            for index in range(requests):
                group.start_soon(send, index)
            ended = await clients[0].post(END_PATH, json={"timeout": 30})
        seconds = time.perf_counter() - started
        return seconds, not ended.json()["complete"] or any(status != 200 for status in statuses)
    finally:
        for each in clients:
            await each.aclose()


async def main(rounds: int, variant: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        server = Server(builtin_config().variants[variant], Path(folder), time_scale=0.05, explore=True)
        try:
            await server.wait_ready()
            async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=30) as seeding:
                await seed_tutorial(seeding, Seed(), Recorder(variant=variant, trial=1))
            for requests in (2, 10):
                timings = [await one_schedule(server.base_url, requests, f"r{requests}-{n}") for n in range(rounds)]
                seconds = sorted(timing for timing, _ in timings)
                deciles = statistics.quantiles(seconds, n=10)
                print(
                    f"{variant}, {requests:2} requests: median {statistics.median(seconds) * 1000:.1f} ms per schedule "
                    f"(p10 {deciles[0] * 1000:.1f}, p90 {deciles[-1] * 1000:.1f}; {rounds} schedules, "
                    f"{sum(failed for _, failed in timings)} failed)"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 50, sys.argv[2] if len(sys.argv) > 2 else "unpatched")
