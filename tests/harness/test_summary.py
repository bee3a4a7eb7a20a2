from __future__ import annotations

from harness.summary import format_summary
from tests.harness.factories import make_result, trial


def test_a_confidence_run_states_its_stopping_rule_under_the_verdicts_line() -> None:
    trials = tuple(
        trial(v, n, ["server-error"] if v == "unpatched" else ["ok"])
        for n in range(1, 5)
        for v in ("unpatched", "patched")
    )
    lines = format_summary(make_result(trials, complete=True, confidence=0.9)).splitlines()
    held = lines.index("held to 90% confidence: every verdict decided")
    assert lines[held + 1] == (
        "  (a build expected to fail is decided by its first failure; a build expected to be clean, once each build "
        "expected to fail has failed 4 trials whose trial of the same number it passed: a build failing at least as "
        "often would show that with chance at most 1 in 16, however often the harness looks)"
    )
