"""Explore mode on a bug inside one call: schedules to the first failure, and what a schedule costs, beside the floor.

Usage: python benchmarks/explore_sqlalchemy.py [SEEDS] [RUNS]   (default: 220 seeds, 20 runs)

The app is the test suite's sync SQLAlchemy pair (tests/harness/server/explored_sqlalchemy_app.py):
``shared``, one module-level session whose bug needs another request's close() between one call's
flush() and its commit(), and ``per_request``, the fix. For each, one server in explore mode (traced,
as a run is) and PCT schedules (depth 2, seeds 1..SEEDS) of 2 POST /items through harness.explore's
own Session. Prints, per build, the schedules that failed, the median wall time of a schedule and of
the floor (the same 2 requests sent at once to the same server, unarmed), and the schedules in which a
step was blocked (SQLite's write lock held by a paused call; each costs the explorer's STEP_BOUND).
For ``shared``, the schedules to the first failure of RUNS runs, the k-th run starting at seed
10k + 1, as a run with those seeds would count them: their median, least and most.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from harness.explore import Session
from harness.launcher import Server
from harness.scenario import load_scenario_file
from harness.server.explorer import STEP_BOUND
from harness.variant import Variant

REPO = Path(__file__).resolve().parents[1]
BUILDS = ("shared", "per_request")
FLOOR_ROUNDS = 50
SCENARIO = """\
description = "two items created at once"
[schedule]
kind = "burst"
requests = 2
[schedule.request]
method = "POST"
path = "/items"
json = { name = "item {i}" }
"""


async def measure(build: str, seeds: int) -> tuple[list[bool], list[float], int, list[float]]:
    """Per seed whether its schedule failed, and its wall time; how many had a blocked step; the floor's rounds."""
    variant = Variant(
        name=build,
        app=f"tests.harness.server.explored_sqlalchemy_app:{build}",
        factory=True,
        app_dir=str(REPO),
        env={"DATABASE_URL": "{database_url}"},
    )
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "items.toml").write_text(SCENARIO)
        scenario = load_scenario_file(Path(folder) / "items.toml")
        server = Server(variant, Path(folder) / "server", time_scale=1, explore=True)
        try:
            async with Session(scenario, server, start_timeout=60) as session:
                steps = len((await session.run(range(2), {"kind": "default"})).steps)
                failed, seconds, blocked = [], [], 0
                for seed in range(1, seeds + 1):
                    started = time.perf_counter()
                    record = await session.run(range(2), {"kind": "pct", "seed": seed, "depth": 2, "steps": steps})
                    seconds.append(time.perf_counter() - started)
                    failed.append(record.failure is not None)
                    blocked += record.blocked > 0
            return failed, seconds, blocked, await floor(server.base_url)
        finally:
            server.stop()


async def floor(base_url: str) -> list[float]:
    """The same two requests at once, unarmed, each on its own connection (opened beforehand, as a schedule's are)."""
    rounds = []
    clients = [httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=60) for _ in range(2)]
    try:
        for each in clients:
            await each.get("/__harness/none")
        for _ in range(FLOOR_ROUNDS):
            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                for index, each in enumerate(clients):
                    group.start_soon(post, each, index)
            rounds.append(time.perf_counter() - started)
    finally:
        for each in clients:
            await each.aclose()
    return rounds


async def post(client: httpx.AsyncClient, index: int) -> None:
    await client.post("/items", json={"name": f"floor {index}"})  # the shared build may answer 500: timed alike


def to_first_failure(failed: list[bool], runs: int) -> list[int]:
    """For runs starting at seeds 1, 11, 21, ...: how many schedules each ran up to and including its first failure."""
    counts = []
    for run in range(runs):
        start = run * 10
        first = next((i for i in range(start, len(failed)) if failed[i]), None)
        if first is None:
            raise SystemExit(f"a run from seed {start + 1} met no failure within seed {len(failed)}: give more SEEDS")
        counts.append(first - start + 1)
    return counts


def main(seeds: int, runs: int) -> None:
    for build in BUILDS:
        failed, seconds, blocked, rounds = anyio.run(measure, build, seeds)
        print(
            f"{build:<12} {sum(failed):>4}/{seeds} PCT schedules failed; a schedule "
            f"{statistics.median(seconds) * 1000:6.1f} ms (median; 90th percentile "
            f"{statistics.quantiles(seconds, n=10)[-1] * 1000:.1f} ms), the floor "
            f"{statistics.median(rounds) * 1000:.1f} ms (the 2 requests unarmed, median of {FLOOR_ROUNDS}); "
            f"{blocked} schedules had a blocked step "
            f"({STEP_BOUND:g} s each)",
            flush=True,
        )
        if build == "shared":
            counts = to_first_failure(failed, runs)
            print(
                f"{'':<12} schedules to the first failure over {runs} runs (seeds from 1, 11, 21, ...): "
                f"median {statistics.median(counts):g}, least {min(counts)}, most {max(counts)}",
                flush=True,
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 220, int(sys.argv[2]) if len(sys.argv) > 2 else 20)
