"""The report in a real browser: Debian's Chromium, driven by Playwright (its own browser download can't work here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from harness.reports import write_report, write_sweep_report
from harness.results import Outcome, read_results
from harness.variant import Expectation
from harness.verdict import judge
from tests.harness import runs
from tests.harness.factories import cell, make_result, make_sweep, on_postgres, trial
from tests.harness.runs import REPO

CHROMIUM = os.environ.get("HARNESS_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags, Chromium keeps trying hosts this sandbox cannot reach.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert shutil.which(CHROMIUM), f"no Chromium at {CHROMIUM}: run tools/install-chromium (Debian's chromium package)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    yield page
    page.close()


def _open(page: Page, path: Path) -> tuple[list[str], list[str]]:
    """Load a page; return the console errors and every URL it asked for."""
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return errors, requests


@pytest.mark.e2e
def test_the_report_of_a_real_run_shows_verdict_bars_and_the_exception(
    burst_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path, page: Page
) -> None:
    out, completed = burst_run
    assert completed.returncode == 0, completed.stderr
    [report] = out.glob("*/report.html")
    assert f"report:  {report}" in completed.stdout
    result = read_results(report.with_name("results.json"))

    errors, requests = _open(page, report)
    page.screenshot(path=tmp_path / "report.png", full_page=True)

    assert errors == []
    assert requests == [report.as_uri()]  # nothing fetched from anywhere else
    assert page.locator("#verdict").inner_text().startswith("Every variant did what was expected of it.")
    unpatched = page.locator('.card[data-variant="unpatched"]').inner_text()
    failed = result.summaries[0].server_errors
    assert f"{failed} of {result.summaries[0].requests} requests" in unpatched
    assert "Connection already opened." in unpatched
    first_clean: dict[str, int] = {}
    for t in result.trials:
        schedule = [r for r in t.records if r.phase == "schedule"]
        clean = t.error is None and all(r.outcome == "ok" for r in schedule)
        drawn = not clean or first_clean.setdefault(t.variant, t.trial) == t.trial  # later clean trials: one line
        lane = page.locator(f'details[data-trial="{t.trial}"] .lane[data-variant="{t.variant}"] g.req')
        assert lane.count() == (len(schedule) if drawn else 0)
    failed_bars = page.locator('details[data-trial="1"] .lane[data-variant="unpatched"] rect.o-server-error')
    assert failed_bars.count() == sum(1 for r in result.trials[0].records if r.outcome == "server-error")
    assert page.locator('.lane[data-variant="patched"] rect.o-server-error').count() == 0

    failed_bars.first.click()
    details = page.locator('details[data-trial="1"] .lane[data-variant="unpatched"] .details').inner_text()
    assert "HTTP 500 after" in details and "peewee.OperationalError: Connection already opened." in details


@pytest.mark.e2e
def test_the_thread_lanes_show_each_failure_and_highlight_one_request_on_every_thread(
    burst_run: tuple[Path, subprocess.CompletedProcess[str]], page: Page
) -> None:
    out, completed = burst_run
    assert completed.returncode == 0, completed.stderr
    [report] = out.glob("*/report.html")
    trials = read_results(report.with_name("results.json")).trials
    unpatched, patched, recommended = [t for t in trials if t.trial == 1]
    failed = [r for r in unpatched.records if r.outcome == "server-error"]

    errors, _ = _open(page, report)

    assert errors == []
    lanes = page.locator('details[data-trial="1"] .lane[data-variant="unpatched"]')
    assert lanes.locator("svg.threads g.cross").count() == len(failed)
    assert lanes.locator("details.causes li").count() == len(failed)
    patched_note = page.locator('details[data-trial="1"] .lane[data-variant="patched"] .threads-note').inner_text()
    assert patched_note.startswith("Each of the") and "served only that request" in patched_note

    # The failed request's cross, then everything of the request that left its connection open.
    [culprit] = [r for r in failed if r.diagnosis and r.diagnosis.kind == "leaked-connection"][:1]
    assert culprit.diagnosis is not None
    other = culprit.diagnosis.requests[1]
    lanes.locator(f'svg.threads g.cross[data-req="{culprit.request_id}"]').first.click(force=True)
    assert "raised 'Connection already opened.'" in lanes.locator(".details").inner_text()
    lanes.locator(f'svg.timeline g.req[data-req="{culprit.request_id}"]').click(force=True)
    assert f"cause: {culprit.diagnosis.text}" in lanes.locator(".details").inner_text()
    lanes.locator(f'svg.timeline g.req[data-req="{other}"]').click(force=True)
    selected = lanes.locator("svg.threads .selected")
    assert selected.count() == lanes.locator(f'svg.threads [data-req="{other}"]').count() >= 2  # jobs and connection
    assert all(selected.nth(i).get_attribute("data-req") == other for i in range(selected.count()))
    assert lanes.locator(f'svg.threads [data-req="{culprit.request_id}"].selected').count() == 0
    assert patched.trace and recommended.trace  # every build was traced


@pytest.mark.e2e
def test_markup_in_an_exception_message_does_not_run_in_the_browser(tmp_path: Path, page: Page) -> None:
    hostile = '<script>window.pwned = true</script><img src=x onerror="window.pwned = true">'
    outcomes: list[Outcome] = ["ok", "server-error"]
    failing = trial("unpatched", 1, outcomes)
    exception = replace(failing.records[1].exceptions[0], message=hostile)
    failing = replace(failing, records=(failing.records[0], replace(failing.records[1], exceptions=(exception,))))
    report = write_report(make_result((failing, trial("patched", 1, ["ok"])), complete=True), tmp_path / "r.html")

    errors, requests = _open(page, report)

    assert errors == [] and requests == [report.as_uri()]
    assert page.evaluate("window.pwned") is None
    assert hostile in page.locator("#exceptions").inner_text()


@pytest.mark.e2e
def test_the_sweep_report_shows_a_heat_map_per_variant_offline(tmp_path: Path, page: Page) -> None:
    cells = (cell(1, 0.5, failed=0, cost=1), cell(10, 0.5, failed=10, cost=10), cell(10, 1.0, failed=6, cost=20))
    report = write_sweep_report(make_sweep(cells), tmp_path / "sweep.html")

    errors, requests = _open(page, report)

    assert errors == [] and requests == [report.as_uri()]
    assert page.locator("figure.heat").count() == 2
    winner = page.locator('figure.heat[data-variant="unpatched"] td.square.winner')
    assert winner.inner_text().split() == ["10/10", "100%"]
    assert "10 in flight every 0.5 tutorial-seconds: 10 of 10 trials failed" in (winner.get_attribute("title") or "")
    assert page.locator('figure.heat[data-variant="unpatched"] td.square').count() == 4  # one of them not run


@pytest.mark.e2e
def test_a_build_that_left_connections_open_shows_it_on_its_card_and_its_chart(tmp_path: Path, page: Page) -> None:
    kept = ((-0.3, 1), (0.0, 4), (0.2, 9), (0.6, 3), (1.2, 0))
    trials = (
        trial("unpatched", 1, ["ok", "server-error"]),
        on_postgres(trial("patched", 1, ["ok", "ok"]), kept, leaked=3),
    )
    result = replace(make_result(trials, complete=True), databases={"patched": "postgres"})
    report = write_report(result, tmp_path / "r.html")

    errors, requests = _open(page, report)

    assert errors == [] and requests == [report.as_uri()]
    flag = page.locator('.card[data-variant="patched"] .kind.leak')
    assert flag.inner_text() == "CONNECTIONS LEAKED" and flag.is_visible()
    chart = page.locator('figure.connections[data-variant="patched"] svg')
    box = chart.bounding_box()
    assert box and box["width"] > 300 and 40 < box["height"] < 200  # small, and drawn
    assert page.locator("figure.connections").count() == 1


@pytest.mark.e2e
@pytest.mark.parametrize("builds", [3, 5])
def test_the_counts_table_fits_a_1400_px_window_with_long_build_names_and_counted_connections(
    tmp_path: Path, page: Page, builds: int
) -> None:
    names = [f"build-{number}-with-a-long-descriptive-name_on_pooled_postgresql.v2" for number in range(builds)]
    kept = ((0.0, 4), (0.2, 9), (1.2, 3))
    trials = tuple(
        on_postgres(trial(name, 1, ["ok", "server-error", "timeout", "transport-error"]), kept, leaked=3)
        for name in names
    )
    expectations: dict[str, Expectation] = {name: "fails" for name in names}
    summaries, verdicts, code = judge(expectations, trials)
    result = replace(
        make_result(complete=True),
        variants=tuple(names),
        trials=trials,
        summaries=summaries,
        verdicts=verdicts,
        exit_code=code,
        databases=dict.fromkeys(names, "postgres"),
    )
    report = write_report(result, tmp_path / "r.html")

    errors, _ = _open(page, report)

    assert errors == []
    table = page.locator("#counts")
    assert table.locator("tr").count() == builds + 1
    # The table's width against its box's content (the page's, less its padding), and the page's against the window.
    widths = table.evaluate(
        """t => {
            const box = getComputedStyle(t.parentElement);
            const content = t.parentElement.clientWidth - parseFloat(box.paddingLeft) - parseFloat(box.paddingRight);
            const page = document.documentElement;
            return [t.scrollWidth, content, page.scrollWidth, page.clientWidth];
        }"""
    )
    assert widths[0] <= widths[1] and widths[2] <= widths[3], widths  # no horizontal scrolling


@pytest.mark.e2e
def test_a_sqlalchemy_builds_lanes_show_who_held_each_pooled_connection_and_who_found_none(
    tmp_path: Path, page: Page
) -> None:
    # The test suite's async build whose sessions are never closed (a pool of 2 + 2), under 12 requests at once.
    scenario = tmp_path / "orders.toml"
    scenario.write_text(
        'trials = 1\nrequest_timeout = 60\n[[seed]]\nmethod = "POST"\npath = "/orders"\njson = { n = "{i}" }\n'
        'repeat = 2\n[schedule]\nkind = "burst"\nrequests = 12\n[schedule.request]\npath = "/orders"\n'
    )
    config = tmp_path / "harness.toml"
    config.write_text(
        '[variants.unclosed]\napp = "tests.harness.sqlalchemy_apps:unclosed_broken"\nfactory = true\n'
        f'app_dir = "{REPO}"\nexpect = "fails"\nenv = {{ DATABASE_URL = "{{database_url}}" }}\n'
    )
    ran = runs.harness("run", "--config", config, "--scenario", scenario, "--out", tmp_path)
    assert ran.returncode == 0, ran.stderr
    [report] = tmp_path.glob("*/report.html")
    [trial_run] = read_results(report.with_name("results.json")).trials
    refused = [r for r in trial_run.records if r.outcome == "server-error"]
    assert refused, trial_run.records

    errors, _ = _open(page, report)

    assert errors == []
    lanes = page.locator('details[data-trial="1"] .lane[data-variant="unclosed"]')
    labels = lanes.locator("svg.threads > text[text-anchor='end']").all_text_contents()
    # A lane for each connection the pool made: its 2 + 2, and one more for each the garbage collector gave back
    # (a session dropped unclosed), which the pool may replace, as a loaded machine's timing has it.
    numbered = [f"#{n}" for n in range(1, len(labels) - 1)]
    assert labels == ["loop", *numbered, "pool"] and len(numbered) >= 4
    kept = lanes.locator("svg.threads rect.hold.kept")
    assert kept.count() == trial_run.unclosed_connections >= 4  # each held to the end by the request that took it
    assert lanes.locator("svg.threads g.cross").count() == len(refused)  # each on the pool's lane
    holder = kept.first.get_attribute("data-req")
    assert holder and "never given back" in (kept.first.locator("title").text_content() or "")
    kept.first.click(force=True)
    selected = lanes.locator("svg .selected")
    assert selected.count() == lanes.locator(f'svg [data-req="{holder}"]').count() >= 2  # its bar and its hold
    assert all(selected.nth(i).get_attribute("data-req") == holder for i in range(selected.count()))
    assert "never given back" in lanes.locator(".details").inner_text()
    note = lanes.locator(".threads-note").inner_text()
    assert f"; {len(refused)} checkouts found no free connection." in note and "asyncio tasks" in note
