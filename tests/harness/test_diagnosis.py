"""Causes from hand-built traces: the reasoning, without servers."""

from __future__ import annotations

from dataclasses import replace

from harness.diagnosis import count_causes, diagnose
from harness.results import RequestRecord, TraceEvent
from tests.harness.factories import record

ENTER, EXIT, VALIDATION = "dependency enter (get_db)", "dependency exit (get_db)", "response validation"


def event(kind: str, request: int | None, thread: int, time: float, **fields: object) -> TraceEvent:
    request_id = None if request is None else f"unpatched-t1-schedule-{request}"
    return TraceEvent(kind=kind, request_id=request_id, thread=thread, time=time, **fields)  # type: ignore[arg-type]


def failed(records: list[RequestRecord], trace: list[TraceEvent]) -> dict[int, str]:
    return {r.index: r.diagnosis.text for r in diagnose(records, trace) if r.diagnosis}


def test_a_connection_left_open_on_a_thread_names_both_requests_threads_and_the_connection() -> None:
    records = [record("unpatched", 1, 4), record("unpatched", 1, 7, "server-error")]
    trace = [
        event("connect", 4, 3, 0.10, phase=ENTER, connection=5),
        event("phase", 4, 3, 0.11, phase=ENTER, start=0.09),
        event("query", 4, 8, 0.20, phase=VALIDATION, connection=None),
        event("close", 4, 6, 0.30, phase=EXIT, connection=None),
        event("connect", 7, 3, 0.40, phase=ENTER, connection=5, error="Connection already opened."),
    ]

    [diagnosis] = [r.diagnosis for r in diagnose(records, trace) if r.diagnosis]

    assert diagnosis.kind == "leaked-connection"
    assert diagnosis.requests == ("unpatched-t1-schedule-7", "unpatched-t1-schedule-4")
    assert diagnosis.threads == (3,) and diagnosis.connection == 5
    assert diagnosis.text == (
        "Request #7's dependency enter (get_db) ran connect() on worker thread 3, which still held connection #5, "
        "opened there by request #4 during its dependency enter (get_db); request #4 never closed it: its "
        "response validation ran on worker thread 8; its dependency exit (get_db) ran on worker thread 6, where "
        "it closed nothing instead."
    )


def test_a_request_still_in_flight_is_said_to_have_moved_on() -> None:
    records = [record("unpatched", 1, 0), record("unpatched", 1, 1, "server-error")]
    trace = [
        event("connect", 0, 2, 0.1, phase=ENTER, connection=1),
        event("connect", 1, 2, 0.2, phase=ENTER, connection=1, error="Connection already opened."),
        event("phase", 0, 4, 0.5, phase="endpoint (read_slow_users)", start=0.12),
    ]

    assert failed(records, trace)[1] == (
        "Request #1's dependency enter (get_db) ran connect() on worker thread 2, which still held connection #1, "
        "opened there by request #0 during its dependency enter (get_db); request #0 was still in flight and had "
        "moved on: its endpoint (read_slow_users) ran on worker thread 4."
    )


def test_a_second_connect_by_the_same_request_is_a_double_connect() -> None:
    records = [record("unpatched", 1, 2, "server-error")]
    trace = [
        event("connect", 2, 1, 0.1, phase=VALIDATION, connection=9, auto=True),
        event("connect", 2, 1, 0.2, phase=ENTER, connection=9, error="Connection already opened."),
    ]

    [diagnosis] = [r.diagnosis for r in diagnose(records, trace) if r.diagnosis]

    assert diagnosis.kind == "double-connect"
    assert "the same request had opened it during its response validation on worker thread 1" in diagnosis.text
    assert "(Peewee opened it by itself for a query)" in diagnosis.text


def test_a_clean_run_gets_no_diagnosis_and_no_causes() -> None:
    records = [record("patched", 1, i) for i in range(3)]
    trace = [event("connect", i, i + 1, 0.1 * i, phase=ENTER, connection=i + 1) for i in range(3)]

    diagnosed = diagnose(records, trace)

    assert diagnosed == records
    assert count_causes(diagnosed) == ()


def test_without_events_of_the_request_the_diagnosis_says_so_and_no_more() -> None:
    records = [record("unpatched", 1, 3, "server-error")]

    [diagnosis] = [r.diagnosis for r in diagnose(records, []) if r.diagnosis]

    assert diagnosis.kind == "no-trace"
    assert "holds no event" in diagnosis.text


def test_a_failure_without_a_failed_connect_reports_what_was_seen() -> None:
    records = [record("unpatched", 1, 5, "server-error")]
    trace = [
        event("phase", 5, 2, 0.2, phase=ENTER, start=0.1),
        event("query", 5, 3, 0.3, phase=VALIDATION, connection=4, error="no such table: item"),
    ]

    [diagnosis] = [r.diagnosis for r in diagnose(records, trace) if r.diagnosis]

    assert diagnosis.kind == "unexplained"
    assert diagnosis.text == (
        "Request #5 failed; its trace shows dependency enter (get_db) on worker thread 2; connections used: #4; "
        "query on worker thread 3 raised 'no such table: item'."
    )


def test_causes_are_counted_by_kind_most_frequent_first() -> None:
    records = [record("unpatched", 1, 0), *(record("unpatched", 1, i, "server-error") for i in (1, 2, 3))]
    trace = [event("connect", 0, 1, 0.1, phase=ENTER, connection=1)] + [
        event("connect", i, 1, 0.2 + i, phase=ENTER, connection=1, error="Connection already opened.") for i in (1, 2)
    ]

    causes = count_causes(diagnose(records, trace))

    assert [(c.kind, c.count, c.first_request_id) for c in causes] == [
        ("leaked-connection", 2, "unpatched-t1-schedule-1"),
        ("no-trace", 1, "unpatched-t1-schedule-3"),
    ]
    assert causes[0].example.startswith("Request #1's dependency enter (get_db) ran connect()")


def test_seed_requests_are_named_as_such() -> None:
    seed = record("unpatched", 1, 0, phase="seed")
    broken = record("unpatched", 1, 1, "server-error")
    trace = [
        replace(event("connect", None, 1, -1.0, phase=ENTER, connection=2), request_id=seed.request_id),
        event("connect", 1, 1, 0.1, phase=ENTER, connection=2, error="Connection already opened."),
    ]

    assert "opened there by seed request #0" in failed([seed, broken], trace)[1]


def test_an_exit_on_another_thread_is_told_once() -> None:
    records = [record("unpatched", 1, 0), record("unpatched", 1, 7, "server-error")]
    trace = [
        event("connect", 0, 1, 0.1, phase=ENTER, connection=10),
        event("phase", 0, 2, 0.3, phase=EXIT, start=0.25),
        event("close", 0, 2, 0.29, phase=EXIT, connection=11),
        event("connect", 7, 1, 0.4, phase=ENTER, connection=10, error="Connection already opened."),
    ]

    assert failed(records, trace)[7].endswith(
        "request #0 never closed it: its dependency exit (get_db) ran on worker thread 2, where it closed "
        "connection #11 instead."
    )


POOL_EMPTY = "Exceeded maximum connections."


def test_a_pool_with_no_free_connection_names_who_held_them_and_that_they_were_given_back() -> None:
    records = [record("unpatched", 1, 0), record("unpatched", 1, 1), record("unpatched", 1, 2, "server-error")]
    trace = [
        event("connect", 0, 1, 0.10, phase=ENTER, connection=1),
        event("connect", 1, 2, 0.11, phase=ENTER, connection=2),
        event("connect", 2, 3, 0.20, phase=ENTER, error=POOL_EMPTY),
        event("close", 0, 4, 2.60, phase=EXIT, connection=1),
        event("close", 1, 5, 2.70, phase=EXIT, connection=2),
    ]

    [diagnosis] = [r.diagnosis for r in diagnose(records, trace) if r.diagnosis]

    assert diagnosis.kind == "pool-exhausted"
    assert diagnosis.requests == tuple(f"unpatched-t1-schedule-{n}" for n in (2, 0, 1))
    assert diagnosis.text == (
        "Request #2's dependency enter (get_db) ran connect() on worker thread 3 and found no free connection in the "
        "pool (Exceeded maximum connections.); it waited and gave up. At that moment 2 connections were checked out: "
        "#1 by request #0 in its dependency enter (get_db) on worker thread 1, given back 2.500 s later on worker "
        "thread 4; #2 by request #1 in its dependency enter (get_db) on worker thread 2, given back 2.590 s later on "
        "worker thread 5. Every one was given back later: the pool was too small for the requests in flight at once."
    )


def test_a_pool_emptied_by_connections_never_given_back_is_a_leak() -> None:
    records = [record("unpatched", 1, 0), record("unpatched", 1, 1, "server-error")]
    trace = [
        event("connect", 0, 1, 0.10, phase=VALIDATION, connection=1, auto=True),
        event("close", 0, 2, 0.15, phase=EXIT, connection=None),
        event("connect", 1, 3, 0.20, phase=ENTER, error="Max connections exceeded, timed out attempting to connect."),
    ]

    text = failed(records, trace)[1]

    assert "#1 by request #0 in its response validation on worker thread 1, never given back" in text
    assert text.endswith("1 of them were never given back: leaked, the pool shrinks for good.")


def test_a_database_server_error_is_explained_by_what_it_usually_means() -> None:
    records = [record("unpatched", 1, 3, "server-error")]
    too_many = 'connection to server at "127.0.0.1", port 5432 failed: FATAL:  sorry, too many clients already\n'
    trace = [event("connect", 3, 2, 0.1, phase=ENTER, error=too_many)]

    [diagnosis] = [r.diagnosis for r in diagnose(records, trace) if r.diagnosis]

    assert diagnosis.kind == "database-error"
    assert diagnosis.text == (
        "Request #3's dependency enter (get_db) ran connect() on worker thread 2, and the database refused it "
        '(connection to server at "127.0.0.1", port 5432 failed: FATAL:  sorry, too many clients already): the '
        "server's max_connections was reached: connections left open by other requests fill it."
    )


def test_an_aborted_transaction_names_the_query() -> None:
    records = [record("unpatched", 1, 0, "server-error")]
    aborted = "current transaction is aborted, commands ignored until end of transaction block"
    trace = [event("query", 0, 2, 0.1, phase="endpoint (read_users)", connection=4, sql="SELECT user", error=aborted)]

    [diagnosis] = [r.diagnosis for r in diagnose(records, trace) if r.diagnosis]

    assert diagnosis.kind == "database-error" and diagnosis.connection == 4
    assert "ran the query SELECT user on worker thread 2" in diagnosis.text
    assert "its transaction was never rolled back" in diagnosis.text
