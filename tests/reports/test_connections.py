from __future__ import annotations

import re
from dataclasses import replace

from harness.reports import render_report
from harness.reports._connections import CHART_TRIALS, connection_charts
from harness.results import Outcome, RunResult, TrialResult
from harness.summary import LEAK_WORDS
from harness.variant import Database
from harness.verdict import judge
from tests.harness.factories import make_result, on_postgres, trial

FAILING: list[Outcome] = ["ok", "server-error", "ok", "server-error"]
CLEAN: list[Outcome] = ["ok"] * 4
# Seeding before 0; the schedule's requests open connections, the last answer is at 0.5 s (factories.record).
GIVEN_BACK = ((-0.3, 1), (0.0, 4), (0.2, 9), (0.6, 0), (1.2, 0))
KEPT_THREE = ((-0.3, 1), (0.0, 4), (0.2, 9), (0.6, 3), (1.2, 0))
SERVER = "postgresql://harness@127.0.0.1:5432/postgres"


def postgres_run(trials: tuple[TrialResult, ...], databases: dict[str, Database]) -> RunResult:
    return replace(make_result(trials, complete=True), databases=databases, database_server=SERVER)


def _figure(html: str, variant: str) -> str:
    return html.split(f'<figure class="connections" data-variant="{variant}">', 1)[1].split("</figure>", 1)[0]


def _card(html: str, variant: str) -> str:
    """The variant's card, from its verdict's class on: ``met" data-variant=...``."""
    cards = html.split('<section class="cards"', 1)[1].split("</section>", 1)[0].split('<div class="card ')[1:]
    return next(card for card in cards if f'data-variant="{variant}">' in card.split(">", 1)[0] + ">")


def _points(polyline: str) -> list[tuple[float, float]]:
    match = re.search(r'points="([^"]*)"', polyline)
    assert match
    return [(float(x), float(y)) for x, y in (point.split(",") for point in match[1].split())]


def test_a_met_build_that_left_connections_open_is_flagged_and_its_worst_trial_drawn_strongly() -> None:
    trials = tuple(
        t
        for n in (1, 2, 3)
        for t in (
            trial("unpatched", n, FAILING),
            on_postgres(trial("patched", n, CLEAN), KEPT_THREE if n == 2 else GIVEN_BACK, leaked=3 if n == 2 else 0),
        )
    )
    html = render_report(postgres_run(trials, {"patched": "postgres"}))
    patched = _card(html, "patched")
    assert patched.startswith('met"')
    assert '<span class="kind leak">connections leaked</span>' in patched
    assert "on <b>PostgreSQL</b>" in patched and "at most 9 connections open at once" in patched
    assert '<span class="leak">left open in 1 of 3 trials, at most 3</span>' in patched
    assert "on <b>SQLite</b>" in _card(html, "unpatched") and "leak" not in _card(html, "unpatched")
    # The counts table: the database of each build; the connections only where they were counted.
    counts = html.split('id="counts"', 1)[1].split("</table>", 1)[0]
    assert re.search(r"<td class=\"name\">unpatched</td><td>fails</td><td>SQLite</td>", counts)
    assert re.search(r"<td class=\"name\">patched</td><td>clean</td><td>PostgreSQL</td>", counts)
    assert '<td class="leak">left open in 1 of 3 trials, at most 3</td>' in counts
    # One chart, of the PostgreSQL build; its three trials, trial 2 strong and named.
    assert "<h2>Connections to the database</h2>" in html and LEAK_WORDS.replace("'", "&#39;") in html
    assert html.count('<svg class="connections"') == 1
    figure = _figure(html, "patched")
    assert figure.count('<polyline class="faint"') == 2
    assert '<polyline class="strong leak"' in figure and "<title>trial 2: at most 9 open at once" in figure
    assert "Drawn strongly: trial 2, at most 9 open at once, left open: 3." in " ".join(figure.split())
    assert '<line class="counted leak"' in figure
    assert f"<dt>PostgreSQL server</dt><dd>{SERVER}: a fresh database" in html
    # The leaking trial's lanes are drawn in full, and say so; the clean trial 3 after it is one line.
    assert '<span class="leak">3 connections left open</span>' in html
    assert html.count('class="note leak"') == 1
    assert html.count('class="note summed-up"') == 1


def test_a_sqlite_run_has_no_connections_to_show() -> None:
    html = render_report(make_result((trial("unpatched", 1, FAILING), trial("patched", 1, CLEAN)), complete=True))
    assert "Connections to the database" not in html and '<svg class="connections"' not in html
    assert "most connections open" not in html and "PostgreSQL" not in html and "left open" not in html
    assert html.count("on <b>SQLite</b>") == 2


def test_against_the_users_server_no_database_is_claimed() -> None:
    result = make_result((trial("unpatched", 1, FAILING), trial("patched", 1, CLEAN)), complete=True)
    html = render_report(replace(result, url="http://127.0.0.1:8000"))
    assert "<th>database</th>" not in html and "SQLite" not in html


def test_each_postgres_build_gets_a_chart_of_its_first_trials_and_its_worst() -> None:
    last = CHART_TRIALS + 5
    trials = tuple(
        on_postgres(trial(variant, n, CLEAN), KEPT_THREE if n == last else GIVEN_BACK, leaked=3 if n == last else 0)
        for n in range(1, last + 1)
        for variant in ("unpatched", "patched")
    )
    html = render_report(postgres_run(trials, {"unpatched": "postgres", "patched": "postgres"}))
    assert html.count('<svg class="connections"') == 2
    for variant in ("unpatched", "patched"):
        figure = _figure(html, variant)
        # The first CHART_TRIALS faint and the named last one, which is past them.
        assert figure.count("<polyline") == CHART_TRIALS + 1
        assert f"<title>trial {last}: " in figure and f"<title>trial {CHART_TRIALS + 1}: " not in figure
        assert f"{CHART_TRIALS + 1} of its {last} trials drawn" in figure
    assert f"A build's first {CHART_TRIALS} trials are drawn, and the named one" in " ".join(html.split())


def test_a_trial_is_a_step_line_from_none_to_the_builds_peak() -> None:
    ran = on_postgres(trial("patched", 1, CLEAN), KEPT_THREE, leaked=3)
    [chart] = connection_charts([trial("unpatched", 1, FAILING), ran], ("unpatched", "patched"))
    points = _points(f'points="{chart.strong.points}"')
    assert len(points) == 2 * len(KEPT_THREE) - 1
    # Each count holds until the next sample: a level stretch, then a jump at the sample's time.
    for (x0, y0), (x1, y1), (x2, _) in zip(points[0::2], points[1::2], points[2::2], strict=False):
        assert y1 == y0 and x1 > x0 and x2 == x1
    ys = [y for _, y in points]
    assert min(ys) == chart.top and max(ys) == chart.bottom  # 9 at the top, 0 at the bottom
    assert [level.label for level in chart.levels] == ["0", "4", "9"]
    zero = next(tick.x for tick in chart.ticks if tick.label == "0 s")
    assert points[0][0] < zero == points[1][0]  # seeding is left of the schedule's start
    # Counted 0.5 s after the last answer (0.5 s), at the level it left open.
    one = next(tick.x for tick in chart.ticks if tick.label == "1 s")
    assert chart.counted_x == one and chart.counted_y == ys[-2]


def test_names_and_the_servers_address_are_shown_as_text() -> None:
    hostile = '<b onmouseover="alert(1)">x</b>'
    trials = (on_postgres(trial(hostile, 1, CLEAN), KEPT_THREE, leaked=3),)
    summaries, verdicts, code = judge({hostile: "clean"}, trials)
    result = replace(
        postgres_run(trials, {hostile: "postgres"}),
        variants=(hostile,),
        summaries=summaries,
        verdicts=verdicts,
        exit_code=code,
        database_server=hostile,
    )
    html = render_report(result)
    assert hostile not in html
    escaped = hostile.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
    assert f'<figure class="connections" data-variant="{escaped}">' in html
    assert f"<dt>PostgreSQL server</dt><dd>{escaped}:" in html
