from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from harness.reports import publish, write_index
from harness.results import write_results
from tests.harness.factories import make_result, on_postgres, trial


def test_the_index_lists_every_run_newest_first_with_its_verdict_and_report(tmp_path: Path) -> None:
    older = replace(make_result(), started_at="2026-11-20T10:00:00.000+00:00")
    newer = make_result((trial("unpatched", 1, ["ok"]), trial("patched", 1, ["ok"])), complete=True)
    newer = replace(newer, started_at="2026-11-21T10:00:00.000+00:00")
    for folder, result in (("a-old", older), ("b-new", newer)):
        (tmp_path / folder).mkdir()
        write_results(result, tmp_path / folder / "results.json")
    publish(newer, tmp_path / "b-new" / "results.json")

    html = write_index(tmp_path).read_text()

    rows = re.findall(r"<tr><td>(2026-[^<]+)</td><td>burst</td>", html)
    assert rows == ["2026-11-21T10:00:00.000+00:00", "2026-11-20T10:00:00.000+00:00"]
    assert '<a href="b-new/report.html">report</a>' in html
    assert 'unpatched: <span class="kind silent">silent</span>' in html  # the newer run's reproducer went silent
    assert "<b>incomplete</b>" in html  # the older run was cut short
    assert html.count("<b>incomplete</b>") == 1


def test_a_build_that_left_connections_open_is_flagged_beside_its_verdict(tmp_path: Path) -> None:
    kept = ((0.0, 4), (0.6, 3), (1.2, 0))
    trials = (trial("unpatched", 1, ["ok", "server-error"]), on_postgres(trial("patched", 1, ["ok"]), kept, leaked=3))
    (tmp_path / "run").mkdir()
    write_results(make_result(trials, complete=True), tmp_path / "run" / "results.json")

    html = write_index(tmp_path).read_text()

    assert 'patched: <span class="kind met">met</span> <span class="kind leak">connections leaked</span>' in html
    assert html.count("connections leaked") == 1


def test_a_folder_with_an_unreadable_results_file_is_listed_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    html = write_index(tmp_path).read_text()
    assert "broken: " in html and "not a JSON results file" in html
