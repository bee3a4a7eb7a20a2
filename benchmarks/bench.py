"""Every target of issue 14 next to what today's code measures, in one run; the floor and the ratio where there is one.

Usage: python benchmarks/bench.py [REPEATS] [--pairs P] [--nox-repeats N] [--skip-suite]   (from the repo root)
       nox -s bench -- [REPEATS] [--pairs P] [--nox-repeats N] [--skip-suite]

REPEATS (default 5) rounds, each running in turn: P pairs (default 3) of ``benchmarks/floor.py``
and one harness trial of one build, alternating which goes first, so drift on a shared machine
falls on both alike (a pair takes seconds: more pairs steady the ratio); ``harness run
--scenario burst --confidence 0.99`` (the three builds, traced); and in the first N rounds
(default: REPEATS, at most 2) ``nox -s scenarios``, its virtualenv made and installed by one
untimed warm-up (``--install-only``) and then reused with ``--no-install``, so no install is
timed. Beside each wall time of the pair, the CPU time (user + system) of the command and the
servers it waited for, which other work on the machine does not inflate. Then, once: Chromium loads each
round's ``--confidence`` report (``benchmarks/report_size.py``'s way), the per-phase breakdown
of one trial (``benchmarks/trial_phases.py REPEATS``), the harness's peak memory over a run of
10,000 scheduled requests, and the README's test command (unless ``--skip-suite``).
Every command line is printed before it runs, every subprocess is bounded by a timeout, and
the table gives each figure as median (min-max); "met" compares the median with the target.
Sizes are in MB of 10^6 bytes (the files' lengths), memory in MB of 10^6 bytes of ru_maxrss.
The whole takes about 10 minutes on 2 cores at REPEATS 3 (the suite alone about 2.5).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from _figures import Ran, run, spread

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
HARNESS = str(Path(sys.executable).with_name("harness"))  # the console script a user types, of this interpreter
TIME_V = "/usr/bin/time"
SUITE = [sys.executable, "-m", "pytest", "-n", "auto", "-q", "-p", "no:cacheprovider"]  # the README's, quieter
# A run of exactly 10,000 scheduled requests of one build: 10 trials of 1,000 at once (time scale 0.05, traced).
MEMORY_SCENARIO = """\
name = "burst-1000"
description = "1,000 requests on /slowusers/ at once, 10 trials: 10,000 scheduled requests"
trials = 10
time_scale = 0.05

[seed]
users = 2
items_per_user = 2

[schedule]
kind = "burst"
requests = 1000
"""
MEMORY_COMMAND = "harness run --scenario burst-1000.toml --variant unpatched"
_HARNESS_RSS = "--harness-rss"  # internal: run harness.cli.main here, then print this process's own peak RSS


@dataclass
class Figures:
    floor: list[float] = field(default_factory=list)
    trial: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    floor_cpu: list[float] = field(default_factory=list)
    trial_cpu: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    trials_per_build: list[int] = field(default_factory=list)
    verdicts: Counter[str] = field(default_factory=Counter)
    run_mb: list[float] = field(default_factory=list)
    listed_mb: list[float] = field(default_factory=list)
    report_mb: list[float] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    nox: list[float] = field(default_factory=list)
    nox_codes: list[str] = field(default_factory=list)
    suite: Ran | None = None
    memory: float | None = None
    memory_time_v: float | None = None
    memory_note: str = ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repeats", nargs="?", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=3, help="floor/trial pairs per round (default: 3)")
    parser.add_argument("--nox-repeats", type=int, default=None, help="rounds with nox -s scenarios (default: <= 2)")
    parser.add_argument("--skip-suite", action="store_true", help="do not run the test suite")
    args = parser.parse_args()
    nox_repeats = min(args.repeats, 2) if args.nox_repeats is None else args.nox_repeats
    began = time.perf_counter()
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    print(f"{os.cpu_count()} cores; load average at the start {_load()}", flush=True)
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        scratch_dir = Path(scratch)
        envdir = scratch_dir / "nox"
        if nox_repeats:
            warm = run([*_nox(envdir), "--install-only"], timeout=900, cwd=ROOT)
            print(f"nox warm-up (installs, not counted): {warm.seconds:.1f} s, {warm.status}", flush=True)
        for number in range(1, args.repeats + 1):
            print(f"--- round {number}/{args.repeats}, load average {_load()}", flush=True)
            for pair in range(args.pairs):
                _pair(figures, scratch_dir / f"trial-{number}-{pair}", first_floor=(number + pair) % 2 == 1)
            _confidence(figures, scratch_dir / f"confidence-{number}")
            if number <= nox_repeats:
                _nox_scenarios(figures, envdir, scratch_dir / f"nox-out-{number}")
        _load_reports(figures)
        phases = run([sys.executable, str(BENCHMARKS / "trial_phases.py"), str(args.repeats)], timeout=900, cwd=ROOT)
        _memory(figures, scratch_dir / "memory")
        if not args.skip_suite:
            figures.suite = run(SUITE, timeout=1200, cwd=ROOT)
            last = figures.suite.stdout.strip().splitlines()[-1:] or ["(no output)"]
            print(f"test suite: {figures.suite.seconds:.1f} s, {figures.suite.status}; {last[0]}", flush=True)
    print()
    print(phases.stdout.rstrip() if phases.returncode == 0 else f"trial_phases.py: {phases.status}\n{phases.stderr}")
    print()
    _table(figures, args.repeats, nox_repeats)
    print(f"\nthe bench took {time.perf_counter() - began:.0f} s; load average at the end {_load()}")


def _pair(figures: Figures, out: Path, *, first_floor: bool) -> None:
    floor_command = [sys.executable, str(BENCHMARKS / "floor.py")]
    trial_command = [HARNESS, "run", "--scenario", "burst", "--variant", "unpatched", "--trials", "1"]
    trial_command += ["--out", str(out)]
    ran = {}
    for name in ("floor", "trial") if first_floor else ("trial", "floor"):
        ran[name] = run(floor_command if name == "floor" else trial_command, timeout=120, cwd=ROOT)
        said = ran[name].stdout.strip().splitlines()[-1:] if name == "floor" else []
        print(
            f"{name}: {ran[name].seconds:.2f} s, CPU {ran[name].cpu_seconds:.2f} s, {ran[name].status}"
            + (f"; {said[0]}" if said else ""),
            flush=True,
        )
    figures.floor.append(ran["floor"].seconds)
    figures.trial.append(ran["trial"].seconds)
    figures.ratios.append(ran["trial"].seconds / ran["floor"].seconds)
    figures.floor_cpu.append(ran["floor"].cpu_seconds)
    figures.trial_cpu.append(ran["trial"].cpu_seconds)
    figures.cpu_ratios.append(ran["trial"].cpu_seconds / ran["floor"].cpu_seconds)


def _confidence(figures: Figures, out: Path) -> None:
    ran = run([HARNESS, "run", "--scenario", "burst", "--confidence", "0.99", "--out", str(out)], timeout=900, cwd=ROOT)
    figures.confidence.append(ran.seconds)
    run_dirs = list(out.glob("*-burst"))
    if len(run_dirs) != 1 or not (run_dirs[0] / "report.html").exists():
        print(f"--confidence 0.99: {ran.seconds:.1f} s, {ran.status}; no report\n{ran.stderr[-2000:]}", flush=True)
        figures.verdicts[f"none ({ran.status})"] += 1
        return
    run_dir = run_dirs[0]
    result = json.loads((run_dir / "results.json").read_text())
    per_build = {summary["variant"]: summary["trials"] for summary in result["summaries"]}
    verdicts = ", ".join(f"{v['variant']} {v['kind']}" for v in result["verdicts"])
    report = run_dir / "report.html"
    files = [path for path in run_dir.rglob("*") if path.is_file() and path != report]
    listed = [run_dir / name for name in ("results.json", "trials.jsonl", "records.jsonl")]
    figures.trials_per_build.extend(per_build.values())
    figures.verdicts[verdicts] += 1
    figures.run_mb.append(sum(path.stat().st_size for path in files) / 1e6)
    figures.listed_mb.append(sum(path.stat().st_size for path in listed if path.exists()) / 1e6)
    figures.report_mb.append(report.stat().st_size / 1e6)
    figures.reports.append(report)
    print(
        f"--confidence 0.99: {ran.seconds:.1f} s, {ran.status}; trials per build "
        + ", ".join(f"{name} {count}" for name, count in per_build.items())
        + f"; {verdicts}; run folder but report.html {figures.run_mb[-1]:.2f} MB in {len(files)} files "
        f"(results.json + trials.jsonl + records.jsonl {figures.listed_mb[-1]:.2f} MB), "
        f"report.html {figures.report_mb[-1]:.2f} MB",
        flush=True,
    )


def _nox(envdir: Path) -> list[str]:
    return [sys.executable, "-m", "nox", "-s", "scenarios", "--reuse-venv", "yes", "--envdir", str(envdir)]


def _nox_scenarios(figures: Figures, envdir: Path, out: Path) -> None:
    # --harness-out after the session's own: pytest takes the last, so the checkout's harness-out/ stays as it was.
    ran = run([*_nox(envdir), "--no-install", "--", "--harness-out", str(out)], timeout=900, cwd=ROOT)
    figures.nox.append(ran.seconds)
    figures.nox_codes.append(str(ran.returncode) if not ran.timed_out else "timeout")
    pytest_line = re.findall(r"=+ (.* in [\d.]+s.*) =+", ran.stdout)
    print(
        f"nox -s scenarios: {ran.seconds:.1f} s, {ran.status}; pytest: {pytest_line[-1] if pytest_line else '-'}",
        flush=True,
    )


def _load_reports(figures: Figures) -> None:
    """Chromium opens each round's report once, to the load event: report_size.py's way, the tests' settings."""
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT))
    from tests.reports.test_browser import CHROMIUM, FLAGS

    print(f"Chromium ({CHROMIUM}, headless via Playwright) loads each --confidence report once", flush=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, timeout=60_000)
        try:
            for report in figures.reports:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                start = time.perf_counter()
                page.goto(report.as_uri(), wait_until="load", timeout=60_000)
                figures.loads.append(time.perf_counter() - start)
                page.close()
        finally:
            browser.close()
    print(f"loads: {', '.join(f'{t:.3f} s' for t in figures.loads)}", flush=True)


def _memory(figures: Figures, folder: Path) -> None:
    folder.mkdir()
    scenario = folder / "burst-1000.toml"
    scenario.write_text(MEMORY_SCENARIO)
    harness = [sys.executable, __file__, _HARNESS_RSS, "run", "--scenario", str(scenario), "--variant", "unpatched"]
    command = [*harness, "--out", str(folder / "out")]
    time_v = Path(TIME_V).exists()
    ran = run([TIME_V, "-v", *command] if time_v else command, timeout=900, cwd=ROOT)
    own = re.search(r"^HARNESS_RSS (\d+)$", ran.stderr, re.MULTILINE)
    whole = re.search(r"Maximum resident set size \(kbytes\): (\d+)", ran.stderr)
    figures.memory = int(own[1]) * 1024 / 1e6 if own else None
    figures.memory_time_v = int(whole[1]) * 1024 / 1e6 if whole else None
    scheduled = 0
    for results in folder.glob("out/*/results.json"):
        scheduled = sum(summary["requests"] for summary in json.loads(results.read_text())["summaries"])
    figures.memory_note = f"{scheduled} scheduled requests recorded, {ran.seconds:.0f} s, {ran.status}"
    print(
        f"memory run: harness process peak RSS {_mb(figures.memory)} MB (its own ru_maxrss); "
        f"{'/usr/bin/time -v: ' + _mb(figures.memory_time_v) + ' MB (the harness or its largest server)' if time_v else ''}; "  # noqa: E501
        f"{figures.memory_note}",
        flush=True,
    )


def _table(figures: Figures, repeats: int, nox_repeats: int) -> None:
    median = statistics.median
    rows = [
        (
            "one trial of one build, traced (`harness run --scenario burst --variant unpatched --trials 1`), s",
            spread(figures.trial),
            spread(figures.floor),
            spread(figures.ratios),
            "ratio <= 1.2",
            _met(median(figures.ratios) <= 1.2),
        ),
        (
            "  the same, CPU time (user + system) of the command and the servers it waited for, s",
            spread(figures.trial_cpu),
            spread(figures.floor_cpu),
            spread(figures.cpu_ratios),
            "-",
            "-",
        ),
        (
            "`harness run --scenario burst --confidence 0.99` (3 builds, traced), s",
            spread(figures.confidence, 1),
            "-",
            "-",
            "<= 10 s (stretch 5 s)",
            f"{_met(median(figures.confidence) <= 10)} (stretch: {_met(median(figures.confidence) <= 5)})",
        ),
        (
            "  trials per build it took",
            spread(figures.trials_per_build, 0),
            "-",
            "-",
            "-",
            "-",
        ),
        (
            "  verdicts reached",
            "; ".join(f"{text} ({count} of {repeats})" for text, count in figures.verdicts.items()),
            "-",
            "-",
            "-",
            "-",
        ),
        (
            "its run folder, all but report.html, MB",
            spread(figures.run_mb),
            "-",
            "-",
            "<= 2 MB",
            _met(median(figures.run_mb) <= 2),
        ),
        (
            "  of which the record: results.json + trials.jsonl (with the trace) + records.jsonl, MB",
            spread(figures.listed_mb),
            "-",
            "-",
            "<= 2 MB",
            _met(median(figures.listed_mb) <= 2),
        ),
        (
            "its report.html, MB",
            spread(figures.report_mb),
            "-",
            "-",
            "<= 1.5 MB",
            _met(median(figures.report_mb) <= 1.5),
        ),
        (
            "Chromium loads that report (to the load event), s",
            spread(figures.loads, 3),
            "-",
            "-",
            "<= 0.5 s",
            _met_median(figures.loads, 0.5),
        ),
        (
            f"`nox -s scenarios`, venv reused, no installs (exit codes {', '.join(figures.nox_codes) or '-'}), s",
            spread(figures.nox, 1),
            "-",
            "-",
            "<= 25 s",
            _met_median(figures.nox, 25),
        ),
        (
            "`python -m pytest -n auto -q -p no:cacheprovider`, one run"
            + (f" ({figures.suite.status}), s" if figures.suite else ", s"),
            f"{figures.suite.seconds:.1f}" if figures.suite else "skipped",
            "-",
            "-",
            "<= 120 s",
            _met(figures.suite.seconds <= 120) if figures.suite else "-",
        ),
        (
            "harness peak RSS over 10,000 scheduled requests (10 trials x 1,000 at once, unpatched, traced), MB",
            _mb(figures.memory),
            "-",
            "-",
            "<= 150 MB",
            _met_median([figures.memory] if figures.memory is not None else [], 150),
        ),
    ]
    print(
        f"issue 14 targets: median (min-max); {len(figures.ratios)} floor/trial pairs in {repeats} rounds, "
        f"one --confidence run per round, nox -s scenarios in {nox_repeats}; ratio = harness trial / floor, "
        "pair by pair"
    )
    print("| figure | measured | floor | ratio | target | target met |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"peak RSS run: {MEMORY_COMMAND}: {figures.memory_note}; the harness process's own ru_maxrss", end="")
    if figures.memory_time_v is not None:
        print(f"; /usr/bin/time -v's maximum RSS {figures.memory_time_v:.1f} MB (the harness or its largest server)")
    else:
        print()


def _met(condition: bool) -> str:
    return "yes" if condition else "no"


def _met_median(values: list[float], target: float) -> str:
    return _met(statistics.median(values) <= target) if values else "-"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _load() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def _harness_rss(argv: list[str]) -> int:
    """Run the harness CLI in this process; print this process's peak RSS (KiB) on stderr for the parent."""
    from harness.cli import main as harness_main

    code = harness_main(argv)
    print(f"HARNESS_RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
    return int(code)


if __name__ == "__main__":
    if sys.argv[1:2] == [_HARNESS_RSS]:
        sys.exit(_harness_rss(sys.argv[2:]))
    main()
