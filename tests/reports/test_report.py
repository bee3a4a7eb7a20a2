from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from harness.diagnosis import CAUSE_WORDS
from harness.reports import render_report, write_report
from harness.results import CauseKind, Diagnosis, Outcome
from tests.harness.factories import make_result, trial

FAILING: list[Outcome] = ["ok", "server-error", "ok", "server-error"]
CLEAN: list[Outcome] = ["ok"] * 4


def _bars(html: str, variant: str, trial_number: int) -> int:
    """Request bars in one variant's timeline of one trial."""
    section = html.split(f'data-trial="{trial_number}"', 1)[1].split("</details>", 1)[0]
    lane = section.split(f'<div class="lane" data-variant="{variant}">', 1)[1].split("</svg>", 1)[0]
    return lane.count('<g class="req"')


def _banner(html: str) -> str:
    match = re.search(r'<div class="banner (\w+)" id="verdict">([^<]*)', html)
    assert match
    return f"{match[1]}: {match[2]}"


def test_a_run_that_met_its_expectations_says_so_in_green() -> None:
    result = make_result((trial("unpatched", 1, FAILING), trial("patched", 1, CLEAN)), complete=True)
    html = render_report(result)
    assert _banner(html) == "ok: Every variant did what was expected of it."
    assert "exit code 0: every variant met its expectation" in html
    assert 'id="incomplete"' not in html
    assert "fails, as expected" in html and "clean, as expected" in html
    # The exception, its count per variant, and one full traceback.
    assert re.search(r"<code>peewee.OperationalError</code>: Connection already opened.</td>\s*<td[^>]*>2</td>", html)
    assert "Traceback (most recent call last):" in html


def test_a_regression_names_the_variant_and_its_exit_code() -> None:
    result = make_result((trial("unpatched", 1, FAILING), trial("patched", 1, FAILING)), complete=True)
    html = render_report(result)
    assert _banner(html) == "bad: REGRESSION: patched"
    assert "exit code 1: regression" in html
    assert '<div class="card regression" data-variant="patched">' in html


def test_a_silent_reproducer_stands_out_as_much_as_a_regression() -> None:
    result = make_result((trial("unpatched", 1, CLEAN), trial("patched", 1, CLEAN)), complete=True)
    html = render_report(result)
    assert _banner(html) == "silent: SILENT REPRODUCER: unpatched"
    assert '<div class="card silent" data-variant="unpatched">' in html
    assert "the reproducer went silent" in html
    assert "No exception left the app in any server." in html


def test_a_trial_that_could_not_run_is_shown_with_its_error() -> None:
    error = "server of unpatched exited with code 1 before it was ready\n--- last lines of its log ---\nImportError: x"
    result = make_result((trial("unpatched", 1, [], error=error), trial("patched", 1, CLEAN)), complete=True)
    html = render_report(result)
    assert _banner(html).startswith("error: COULD NOT RUN: unpatched")
    assert "Trials that could not be carried out" in html and "ImportError: x" in html


def test_a_merged_run_shows_where_each_variant_ran_on_its_card() -> None:
    result = make_result((trial("unpatched", 1, FAILING), trial("patched", 1, CLEAN)), complete=True)
    assert 'class="host"' not in render_report(result)  # one run, one machine: its environment says which
    html = render_report(replace(result, hosts={"unpatched": "ci-7 (gw1)", "patched": "ci-8 (gw0)"}))
    cards = html.split('<section class="cards"', 1)[1].split("</section>", 1)[0]
    for variant, where in (("unpatched", "ci-7 (gw1)"), ("patched", "ci-8 (gw0)")):
        card = cards.split(f'data-variant="{variant}"', 1)[1].split('<div class="card', 1)[0]
        assert f'<div class="host">ran on <b>{where}</b></div>' in card


def test_an_incomplete_run_renders_what_was_saved_and_says_so() -> None:
    html = render_report(make_result())  # cut short: one request still in flight
    assert 'id="incomplete"' in html and "cut short after 1 trials" in html
    assert "no answer (interrupted)" in html


def test_every_request_of_a_trial_with_a_failure_is_a_bar_and_later_clean_trials_are_one_line() -> None:
    trials = tuple(t for n in (1, 2, 3) for t in (trial("unpatched", n, FAILING * 25), trial("patched", n, CLEAN * 25)))
    html = render_report(make_result(trials, complete=True))
    assert [_bars(html, v, n) for n in (1, 2, 3) for v in ("unpatched", "patched")] == [100, 100, 100, 0, 100, 0]
    assert html.count('class="note summed-up"') == 2
    assert "the other 2 clean trials are" in " ".join(html.split())
    # Both lanes of a trial are drawn on the same axis: the same tick marks.
    section = html.split('data-trial="1"', 1)[1].split("</details>", 1)[0]
    ticks = [
        re.findall(r'<text x="([\d.]+)" y="[\d.]+" text-anchor="middle">([^<]+)</text>', lane)
        for lane in section.split('<div class="lane"')[1:]
    ]
    assert len(ticks) == 2 and ticks[0] == ticks[1] and len(ticks[0]) >= 3


def test_a_request_bar_tells_its_index_planned_offset_status_latency_and_exception() -> None:
    result = make_result((trial("unpatched", 1, FAILING), trial("patched", 1, CLEAN)), complete=True)
    html = render_report(result)
    title = re.search(r"<title>(request #1 [^<]*)</title>", html)
    assert title
    assert title[1].splitlines()[:3] == [
        "request #1 GET /slowusers/, planned at +0.000 s, sent at +0.010 s",
        "HTTP 500 after 490 ms",
        "peewee.OperationalError: Connection already opened.",
    ]


def test_many_requests_stay_small(tmp_path: Path) -> None:
    trials = tuple(
        t for n in range(1, 6) for t in (trial("unpatched", n, FAILING * 25), trial("patched", n, CLEAN * 25))
    )
    path = write_report(make_result(trials, complete=True), tmp_path / "report.html")
    assert path.stat().st_size < 2_000_000 / 2  # 1,000 requests, well under the 2 MB a page may weigh


@pytest.mark.parametrize(
    "hostile",
    ['<script>document.title="pwned"</script>', '<img src=x onerror="alert(1)">', "</pre></details><h1>x</h1>"],
)
def test_text_from_servers_and_scenario_files_is_shown_as_text(hostile: str) -> None:
    failing = trial("unpatched", 1, FAILING)
    exceptions = (replace(failing.records[1].exceptions[0], message=hostile),)
    failing = replace(failing, records=(failing.records[0], replace(failing.records[1], exceptions=exceptions)))
    result = make_result((failing, trial("patched", 1, CLEAN, error=hostile)), complete=True)
    result = replace(result, scenario=replace(result.scenario, name=hostile, description=hostile))
    html = render_report(result)
    assert hostile not in html
    assert hostile.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;") in html


def test_the_page_needs_nothing_from_elsewhere() -> None:
    html = render_report(make_result())
    assert not re.search(r"<link|<img|<iframe|src=|@import|url\(|https?://", html)


def test_a_run_stopped_before_any_trial_still_renders() -> None:
    html = render_report(make_result(()))
    assert _banner(html) == "error: COULD NOT RUN: unpatched; COULD NOT RUN: patched"
    assert "cut short after 0 trials" in html and 'class="trial"' not in html


def test_a_confidence_run_states_its_stopping_rule_and_the_evidence_of_each_verdict() -> None:
    trials = tuple(
        trial(v, n, FAILING if v == "unpatched" else CLEAN) for n in range(1, 8) for v in ("unpatched", "patched")
    )
    html = render_report(make_result(trials, complete=True, confidence=0.99))
    assert (
        "until every verdict was decided at 99% confidence (a build expected to fail is decided by its first failure; "
        "a build expected to be clean, once each build expected to fail has failed 7 trials whose trial of the same "
        "number it passed: a build failing at least as often would show that with chance at most 1 in 128"
    ) in html
    assert "decided clean at 99% confidence: in 7 pairs of trials (trial n of each build) unpatched failed" in html


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (
            "pool-exhausted",
            "found no free connection in the pool (Exceeded maximum connections.); it waited and gave up",
        ),
        ("database-error", "the database refused it (FATAL: sorry, too many clients already)"),
    ],
)
def test_a_cause_the_database_server_gave_is_told_in_words(kind: CauseKind, text: str) -> None:
    failing = trial("unpatched", 1, FAILING)
    records = tuple(
        replace(r, diagnosis=Diagnosis(kind=kind, text=text, threads=(1,), requests=(r.request_id,)))
        if r.outcome == "server-error"
        else r
        for r in failing.records
    )
    html = render_report(make_result((replace(failing, records=records), trial("patched", 1, CLEAN)), complete=True))
    causes = html.split('id="causes"', 1)[1].split("</table>", 1)[0]
    assert f'<tr><td>unpatched</td><td>{CAUSE_WORDS[kind]}</td><td class="num">2</td><td>{text}</td></tr>' in causes


def test_a_build_that_failed_on_a_leak_says_so_on_its_card_and_in_the_counts() -> None:
    leaking = replace(trial("patched", 1, CLEAN), unclosed_connections=2)
    result = make_result((trial("unpatched", 1, FAILING), leaking), complete=True, fail_on=("5xx", "leak"))

    html = render_report(result)

    assert "failed in 1 of 1 trials (1 on a leak)" in html
    assert re.search(r'<td class="num">1</td><td class="num">1 \(1 on a leak\)</td>', html)
    assert "1 trial left connections never closed or given back (at most 2 in one)" in html
