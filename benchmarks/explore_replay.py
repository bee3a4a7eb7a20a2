"""Do saved failing schedules fail again in fresh servers? Replays of unpatched's failing PCT schedules.

Usage: python benchmarks/explore_replay.py [COUNT] [REQUESTS]   (default: 100 schedules of 2 requests)

One explore-mode server of the tutorial's unpatched build, seeded as a run seeds it, runs PCT
schedules (depth 2, seeds 1, 2, ...) of burst's request until COUNT of them have failed;
each failing schedule, as its record's choices, is then replayed in a fresh server of its
own (harness.explore.replay_in_fresh_server, what harness replay runs) and counted as
reproduced when the same request fails at the same step with the same exception. Prints
the count, and the median seconds of a replay (server start, seeding, the schedule, stop).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import anyio

from harness.config import builtin_config
from harness.explore import Session, launch, replay_in_fresh_server
from harness.plan import build_plan
from harness.search import Schedule, replay_chooser
from harness.settings import resolve


async def main(count: int, requests: int) -> None:
    config = builtin_config()
    with tempfile.TemporaryDirectory() as folder:
        plan = build_plan(config, resolve({"explore": True}, config), variants=["unpatched"], run_dir=Path(folder))
        plan = replace(plan, scenario=replace(plan.scenario, explore=replace(plan.scenario.explore, requests=requests)))
        variant = plan.variants[0]
        found: list[tuple[Schedule, str]] = []
        server = launch(plan, variant, "search")
        try:
            async with Session(plan.scenario, server, start_timeout=60) as session:
                steps = len((await session.run(range(requests), {"kind": "default"})).steps)
                seed = 0
                while len(found) < count:
                    seed += 1
                    chooser = {"kind": "pct", "seed": seed, "depth": 2, "steps": steps}
                    record = await session.run(range(requests), chooser)
                    if record.failure is not None:
                        schedule = Schedule(requests=tuple(range(requests)), choices=record.chosen, chooser=chooser)
                        found.append((schedule, repr(record.failure)))
        finally:
            server.stop()
        print(f"{count} failing schedules in seeds 1-{seed}", flush=True)
        reproduced, seconds = 0, []
        for number, (schedule, failure) in enumerate(found, 1):
            started = time.perf_counter()
            replay = await replay_in_fresh_server(
                plan, variant, replace(schedule, chooser=replay_chooser(schedule.choices)), trial=number
            )
            seconds.append(time.perf_counter() - started)
            reproduced += replay.record is not None and repr(replay.record.failure) == failure
        print(
            f"reproduced in a fresh server: {reproduced} of {count}; "
            f"a replay took {statistics.median(seconds):.2f} s (median, min {min(seconds):.2f}, max {max(seconds):.2f})"
        )


if __name__ == "__main__":
    anyio.run(
        main,
        int(sys.argv[1]) if len(sys.argv) > 1 else 100,
        int(sys.argv[2]) if len(sys.argv) > 2 else 2,
    )
