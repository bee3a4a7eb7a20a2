"""Where the time of one harness trial of one build goes, phase by phase.

Usage: python benchmarks/trial_phases.py [TRIALS]   (default 5; run from the repository root)

Does what ``harness run --scenario burst --variant unpatched --trials 1`` does, with the
harness's own functions (harness.pipeline, harness.launcher, harness.runner,
harness.results, harness.reports) called in-process, the trace on, ``time.perf_counter``
around each step. Repeats it TRIALS times, each in a new Python process (``--one``), as
every ``harness run`` is one, so what is paid once per process (a template compiled, a
module loaded late) is counted every time; then prints the median (min-max) of each phase:

- start: ``Server(...)`` (its folder, the fork from the warm parent) until uvicorn's "Uvicorn
  running on" line is in its log, seen by a poll every millisecond beside the harness's own;
  this first server also waits for whatever is left of the warm parent's imports;
- ready: from that line until ``Server.wait_ready`` returns (its poll every 20 ms; the tutorial's
  builds have no ready path);
- seed: ``make_client`` and ``run_trial``'s seeding, until ``Recorder.start_schedule``;
- schedule: from then until the last request of the schedule was handed to the client;
- drain: from then until every answer is in and the client is closed (with
  ``pipeline._exit_code_if_died``);
- stop: ``Server.stop`` (SIGTERM, wait), in a worker thread as the pipeline runs it;
- trace + diagnosis: ``runner.trial_result`` (the probe's events, the trace, the diagnosis);
- run set-up: the warm parent started (``harness.forkserver.warm_up``, which does not wait for
  its imports), ``describe_environment``, the first (empty) results file, the journal opened;
- write results: the results file written twice, after the round and at the end, as
  ``pipeline.execute`` does for one trial, and the journal closed;
- render report: ``harness.reports.publish`` (report.html and the folder's index.html), and
  the summary the command prints;
- interpreter + imports: ``python -c "import harness.cli, harness.pipeline, harness.reports"``
  in a new process, the cost every ``harness run`` pays before any of the above.
"""

from __future__ import annotations

import json
import re
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import anyio
from _figures import run, spread

from harness import pipeline
from harness.config import builtin_config
from harness.environment import describe_environment
from harness.files import make_run_dir
from harness.forkserver import warm_up
from harness.journal import Journal
from harness.launcher import Server
from harness.reports import publish
from harness.results import TRIALS_FILE, TrialLog, TrialResult, write_summary
from harness.runner import Recorder, make_client, run_trial, trial_result
from harness.summary import format_summary
from harness.variant import Variant
from harness.verdict import judged_plan

PHASES = (
    "interpreter + imports",
    "run set-up",
    "start",
    "ready",
    "seed",
    "schedule",
    "drain",
    "stop",
    "trace + diagnosis",
    "write results",
    "render report",
)
IMPORTS = [sys.executable, "-c", "import harness.cli, harness.pipeline, harness.reports"]
_RUNNING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def one_run(out: Path) -> dict[str, float]:
    """One run of one trial of the unpatched build under burst, traced; the seconds of each phase."""
    config = builtin_config()
    scenario = replace(config.scenario("burst"), trials=1)
    variant = config.variants["unpatched"]
    plan = pipeline.RunPlan(scenario=scenario, variants=(variant,), run_dir=make_run_dir(out, scenario.name))
    times: dict[str, float] = {}

    mark = time.perf_counter()
    started_at, started = pipeline._now(), time.monotonic()
    warm_up()
    environment = describe_environment()
    write_summary(judged_plan(plan, [], environment, started_at, started, complete=False), plan.results_path)
    trial_log = TrialLog(plan.results_path.with_name(TRIALS_FILE))
    journal = Journal(plan.journal_path)
    times["run set-up"] = time.perf_counter() - mark

    recorder = Recorder(variant=variant.name, trial=1, on_change=journal.append)
    trial = anyio.run(_trial, plan, variant, recorder, times)

    mark = time.perf_counter()
    trial_log.append(trial)
    for complete in (False, True):  # after the round, then at the end
        if complete:
            trial_log.close()
            journal.close()
        result = judged_plan(plan, [trial], environment, started_at, started, complete=complete)
        write_summary(result, plan.results_path)
    times["write results"] = time.perf_counter() - mark

    mark = time.perf_counter()
    publish(result, plan.results_path)
    format_summary(result)
    times["render report"] = time.perf_counter() - mark
    return times


async def _trial(plan: pipeline.RunPlan, variant: Variant, recorder: Recorder, times: dict[str, float]) -> TrialResult:
    mark = time.perf_counter()
    server = Server(
        variant,
        plan.run_dir / "servers" / f"{variant.name}-trial1",
        time_scale=plan.scenario.time_scale,
        host=plan.host,
        trace=plan.trace,
    )
    try:
        seen: list[float] = []

        async def watch() -> None:  # when the line is there, to the millisecond
            with anyio.move_on_after(plan.start_timeout):
                while not _RUNNING.search(server.log_path.read_bytes()) and server.process.poll() is None:
                    await anyio.sleep(0.001)
                seen.append(time.perf_counter())

        started_at = pipeline._now()
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await server.wait_ready(plan.start_timeout)
            ready = time.perf_counter()
        times["start"] = seen[0] - mark
        times["ready"] = max(0.0, ready - seen[0])

        mark = time.perf_counter()
        async with make_client(server.base_url, plan.scenario) as client:
            await run_trial(client, plan.scenario, recorder)
        exit_code = await pipeline._exit_code_if_died(server, recorder)
        drained = time.perf_counter()
        last_sent = recorder.origin + max(r.sent_at for r in recorder.records() if r.phase == "schedule")
        times["seed"] = recorder.origin - mark  # start_schedule moved the origin to the schedule's start
        times["schedule"] = last_sent - recorder.origin
        times["drain"] = drained - last_sent
    finally:
        mark = time.perf_counter()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.stop)
        times["stop"] = time.perf_counter() - mark

    mark = time.perf_counter()
    trial = trial_result(server, 1, recorder, started_at, None, exit_code)
    times["trace + diagnosis"] = time.perf_counter() - mark
    return trial


def main(trials: int) -> None:
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    print(
        "one trial of the unpatched build under burst (100 requests at once, time scale 0.05), traced, "
        f"driven with the harness's own functions; {trials} runs, each in a new process"
    )
    figures: dict[str, list[float]] = {phase: [] for phase in PHASES}
    with tempfile.TemporaryDirectory() as out:
        for number in range(trials):
            figures["interpreter + imports"].append(run(IMPORTS, timeout=60, quiet=number > 0).seconds)
            child = run([sys.executable, __file__, "--one", out], timeout=120, quiet=number > 0)
            if child.returncode != 0 or child.timed_out:
                sys.exit(f"trial_phases: a run failed ({child.status}):\n{child.stderr[-2000:]}")
            for phase, seconds in json.loads(child.stdout.splitlines()[-1]).items():
                figures[phase].append(seconds)
    totals = [sum(figures[phase][i] for phase in PHASES) for i in range(trials)]
    width = max(map(len, PHASES))
    print(f"{'phase':<{width}}  {'seconds, median (min-max)':<26}  of the total")
    for phase in PHASES:
        part = statistics.median(figures[phase]) / statistics.median(totals)
        print(f"{phase:<{width}}  {spread(figures[phase], 3):<26}  {part:.0%}")
    print(f"{'total':<{width}}  {spread(totals, 3):<26}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one_run(Path(sys.argv[2]))))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
