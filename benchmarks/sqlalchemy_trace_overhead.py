"""What the trace costs a SQLAlchemy app: one trial traced, one with ``--no-trace``, and the floor, in rounds.

Usage: python benchmarks/sqlalchemy_trace_overhead.py [ROUNDS]   (default: 30)

The app is the test suite's async SQLAlchemy build ``unclosed_fixed`` (tests/harness/sqlalchemy_apps.py:
aiosqlite, a pool of 2 + 2 overflow, a session per request): 3 orders seeded, then 100 GET /orders at
once. Each round runs, in an order that turns with the round so drift on a shared machine falls on
all alike, one harness trial with the trace, one without, and the floor: the same server started by
plain uvicorn and the same requests sent with httpx, with no harness code; a first round, not
counted, warms up. Prints the median wall time per trial (start to stop, the server's start
included) and the median request latency of each, their ratios, and the median of the rounds'
own traced/untraced ratios with its 95% interval: each round's pair ran back to back, so a load
that drifts falls on both (:func:`_figures.paired_ratio`).
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _figures import paired_ratio

from harness.files import make_run_dir
from harness.pipeline import execute
from harness.plan import RunPlan
from harness.scenario import load_scenario_file
from harness.variant import Variant

REPO = Path(__file__).resolve().parents[1]
APP = "tests.harness.sqlalchemy_apps:unclosed_fixed"
REQUESTS = 100
RUNS = ("traced", "untraced", "floor")
EVENTS_PER_REQUEST: list[float] = []  # of the schedule's requests, in each traced trial
SCENARIO = f"""\
description = "{REQUESTS} order listings at once"
trials = 1
[[seed]]
method = "POST"
path = "/orders"
json = {{ n = "{{i}}" }}
repeat = 3
[schedule]
kind = "burst"
requests = {REQUESTS}
[schedule.request]
method = "GET"
path = "/orders"
"""


def harness_trial(out: Path, *, trace: bool) -> tuple[float, list[float]]:
    scenario_file = out / "orders.toml"
    scenario_file.write_text(SCENARIO)
    scenario = load_scenario_file(scenario_file)
    variant = Variant(name="app", app=APP, factory=True, app_dir=str(REPO), env={"DATABASE_URL": "{database_url}"})
    start = time.perf_counter()
    [trial] = execute(
        RunPlan(scenario=scenario, variants=(variant,), run_dir=make_run_dir(out, "s"), trace=trace)
    ).trials
    seconds = time.perf_counter() - start
    assert trial.error is None and all(r.outcome == "ok" for r in trial.records), trial.error
    schedule = {r.request_id for r in trial.records if r.phase == "schedule"}
    EVENTS_PER_REQUEST.append(sum(e.request_id in schedule for e in trial.trace) / len(schedule))
    return seconds, [r.completed_at - r.sent_at for r in trial.records if r.completed_at and r.phase == "schedule"]


async def floor_requests(url: str) -> list[float]:
    async def timed(client: httpx.AsyncClient) -> float:
        sent = time.perf_counter()
        (await client.get("/orders")).raise_for_status()
        return time.perf_counter() - sent

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)  # a connection per request
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, trust_env=False) as client:
        for n in range(3):
            (await client.post("/orders", json={"n": n})).raise_for_status()
        return list(await asyncio.gather(*(timed(client) for _ in range(REQUESTS))))


def floor_trial(out: Path) -> tuple[float, list[float]]:
    start = time.perf_counter()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{out}/floor.sqlite3", "PYTHONPATH": str(REPO)}
    log = out / "floor.log"
    command = [sys.executable, "-m", "uvicorn", "--factory", APP, "--host", "127.0.0.1", "--port", "0"]
    with log.open("wb") as written:
        server = subprocess.Popen(command, cwd=out, env=env, stdin=subprocess.DEVNULL, stdout=written, stderr=written)
    try:
        while not (found := re.search(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_bytes())):
            if server.poll() is not None or time.perf_counter() - start > 30:
                sys.exit(f"floor: the server exited with {server.poll()} or was not running within 30 s")
            time.sleep(0.01)
        latencies = asyncio.run(floor_requests(f"http://127.0.0.1:{found[1].decode()}"))
    finally:
        server.terminate()
        server.wait(10)
    return time.perf_counter() - start, latencies


def main(rounds: int) -> None:
    seconds: dict[str, list[float]] = {name: [] for name in RUNS}
    latencies: dict[str, list[list[float]]] = {name: [] for name in RUNS}
    for round_ in range(-1, rounds):  # round -1 warms up (the harness's warm parent, the disk's cache): not counted
        for name in RUNS[round_ % 3 :] + RUNS[: round_ % 3]:
            with tempfile.TemporaryDirectory() as out:
                if name == "floor":
                    took, latency = floor_trial(Path(out))
                else:
                    took, latency = harness_trial(Path(out), trace=name == "traced")
            if round_ >= 0:
                seconds[name].append(took)
                latencies[name].append(latency)
        print(f"round {round_ + 1}/{rounds}", file=sys.stderr)
    wall = {name: statistics.median(values) for name, values in seconds.items()}
    latency = {name: statistics.median(v for each in values for v in each) * 1000 for name, values in latencies.items()}
    for name in RUNS:
        print(f"{name:<9} median wall time per trial {wall[name]:.2f} s; median latency {latency[name]:.0f} ms")
    print(
        f"ratios of the medians: traced/untraced {wall['traced'] / wall['untraced']:.2f} (latency "
        f"{latency['traced'] / latency['untraced']:.2f}); traced/floor {wall['traced'] / wall['floor']:.2f}; "
        f"untraced/floor {wall['untraced'] / wall['floor']:.2f}"
    )
    per_round = list(zip(seconds["traced"], seconds["untraced"], strict=True))
    medians = [
        (statistics.median(t), statistics.median(u))
        for t, u in zip(latencies["traced"], latencies["untraced"], strict=True)
    ]
    print(f"traced/untraced, round by round: wall {paired_ratio(per_round)}; median latency {paired_ratio(medians)}")
    print(f"trace events per request: {statistics.median(n for n in EVENTS_PER_REQUEST if n):.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
