from __future__ import annotations

from dataclasses import replace

from harness.summary import format_summary, missing_evidence
from tests.harness.factories import CONNECTION_OPENED, make_result, on_postgres, trial


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


def test_on_sqlite_a_build_that_never_closed_a_connection_is_listed_beside_the_tidy_ones() -> None:
    leaky = replace(trial("unpatched", 1, ["ok"]), unclosed_connections=3)
    tidy = replace(trial("patched", 1, ["ok"]), unclosed_connections=0)

    lines = format_summary(make_result((leaky, tidy), complete=True)).splitlines()

    start = lines.index("connections of each build:")
    assert lines[start + 1 : start + 4] == [
        "  unpatched  never closed by the app: at most 3 in a trial",
        "  patched    never closed by the app: at most 0 in a trial",
        "  (never closed: opened and never closed or given back to its pool, by the app's own trace)",
    ]
    assert "left open" not in "\n".join(lines)
    # With nothing left behind by any build, the section is not printed at all.
    assert "connections of each build:" not in format_summary(make_result((tidy,), complete=True))


def test_a_builds_line_counts_its_trials_that_failed_on_a_leak() -> None:
    trials = (
        replace(trial("unpatched", 1, ["server-error"]), unclosed_connections=0),
        replace(trial("unpatched", 2, ["ok"]), unclosed_connections=3),
        replace(trial("patched", 1, ["ok"]), unclosed_connections=0),
        replace(trial("patched", 2, ["ok"]), unclosed_connections=0),
    )
    result = make_result(
        trials,
        complete=True,
        fail_on=("5xx", "leak"),
    )

    rows = {line.split()[0]: line.split() for line in format_summary(result).splitlines()[1:4]}

    assert rows["unpatched"][2:6] == ["2/2", "(1", "on", "a"]
    assert rows["patched"][2:4] == ["0/2", "0%"]
    assert "could not fail on a leak" not in format_summary(result)  # every trial's trace counted its connections


def test_trials_that_could_not_show_a_leak_are_listed_as_missing_evidence() -> None:
    unseen = (trial("unpatched", 1, ["server-error"]), trial("patched", 1, ["ok"]))  # unclosed_connections None
    result = make_result(
        unseen,
        complete=True,
        fail_on=("5xx", "leak"),
    )

    assert missing_evidence(result)[-1] == (
        "Leaks (fail_on 'leak') in the trials whose trace shows no connections, or was cut at its limit "
        "(unpatched 1, patched 1): those trials could not fail on a leak."
    )


def test_a_multi_line_exception_message_takes_one_line_of_the_summary_marked_as_cut() -> None:
    message = "validation failed\n  field: name\n  reason: missing\n"
    failed = replace(CONNECTION_OPENED, type="app.ValidationError", message=message)
    broken = trial("unpatched", 1, ["ok", "server-error"])
    broken = replace(broken, records=(broken.records[0], replace(broken.records[1], exceptions=(failed,))))

    text = format_summary(make_result((broken, trial("patched", 1, ["ok"])), complete=True))

    [line] = [line for line in text.splitlines() if "ValidationError" in line and line.startswith("  ")]
    assert line == "  unpatched: 1x app.ValidationError: validation failed [+2 more lines]"
    assert "  field: name" not in text
