"""Size of the HTML report of a 1,000-request run, and how long Chromium takes to open it.

Usage: python benchmarks/report_size.py [LOADS]   (default 5)
Runs `harness run --scenario burst --trials 5` (100 requests x 5 trials x 2 variants),
then times rendering the report from results.json and LOADS page loads in Debian's
Chromium (headless, through Playwright) to the load event, by the wall clock and by the page's own.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from harness.reports import render_report
from harness.results import read_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the browser settings are the tests' own
from tests.reports.test_browser import CHROMIUM, FLAGS


def main(loads: int) -> None:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "harness", "run", "--scenario", "burst", "--trials", "5", "--out", out]
        completed = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        [report] = Path(out).glob("*/report.html")
        result = read_results(report.with_name("results.json"))
        requests = sum(1 for t in result.trials for r in t.records if r.phase == "schedule")
        print(f"run: exit code {completed.returncode}, {requests} requests in the schedule")
        results_size = report.with_name("results.json").stat().st_size
        print(f"report: {report.stat().st_size / 1e6:.2f} MB (results.json {results_size / 1e6:.2f} MB)")

        renders = []
        for _ in range(loads):
            start = time.perf_counter()
            render_report(result)
            renders.append(time.perf_counter() - start)
        print(f"render from results: median {statistics.median(renders):.3f} s over {loads}")

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            times, own_clock = [], []
            for _ in range(loads):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                start = time.perf_counter()
                page.goto(report.as_uri(), wait_until="load")
                times.append(time.perf_counter() - start)
                own_clock.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000)
                page.close()
            browser.close()
        print(
            f"open in Chromium: median {statistics.median(times):.3f} s to the load event "
            f"(max {max(times):.3f} s), by the page's clock {statistics.median(own_clock):.3f} s, over {loads} loads"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
