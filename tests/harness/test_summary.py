from __future__ import annotations

from dataclasses import replace

from harness.summary import format_summary
from tests.harness.factories import make_result, on_postgres, trial


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


def test_connections_say_what_the_server_counted_and_what_the_app_never_gave_back() -> None:
    pooled = replace(
        on_postgres(trial("patched", 1, ["ok"]), [(0.0, 2), (0.4, 4)], leaked=4),
        unclosed_connections=0,
        most_checked_out=3,
        pooled=True,
    )
    leaky = replace(on_postgres(trial("unpatched", 1, ["ok"]), [(0.0, 1), (0.3, 6)], leaked=6), unclosed_connections=6)

    lines = format_summary(make_result((leaky, pooled), complete=True)).splitlines()

    start = lines.index("connections of each build:")
    assert lines[start + 1 : start + 3] == [
        "  unpatched  at most 6 open at once (PostgreSQL); left open in 1 of 1 trials, at most 6; "
        "never closed by the app: at most 6 in a trial",
        "  patched    at most 4 open at once (PostgreSQL); left open in 1 of 1 trials, at most 4 (idle in its pool: "
        "the app gave every one back); held by the app: at most 3 at once; "
        "never closed by the app: at most 0 in a trial",
    ]
    assert lines[start + 3].startswith("  (left open: still open at the database server 0.5 s after")
    # No pool: the server was still closing what the app had closed, not keeping it idle (issue 25's trap).
    unpooled = replace(pooled, pooled=False)
    lines = format_summary(make_result((leaky, unpooled), complete=True)).splitlines()
    assert "idle in its pool" not in lines[lines.index("connections of each build:") + 2]


def test_on_sqlite_only_the_builds_that_never_closed_a_connection_are_listed() -> None:
    leaky = replace(trial("unpatched", 1, ["ok"]), unclosed_connections=3)
    tidy = replace(trial("patched", 1, ["ok"]), unclosed_connections=0)

    lines = format_summary(make_result((leaky, tidy), complete=True)).splitlines()

    start = lines.index("connections of each build:")
    assert lines[start + 1 : start + 3] == [
        "  unpatched  never closed by the app: at most 3 in a trial",
        "  (never closed: opened and never closed or given back to its pool, by the app's own trace)",
    ]
    assert "left open" not in "\n".join(lines)
