"""Causes from hand-built traces: the reasoning, without servers."""

from __future__ import annotations

from dataclasses import replace

from harness.diagnosis import count_causes, diagnose
from harness.results import RequestRecord, TraceEvent
from tests.harness.factories import CONNECTION_OPENED, record

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
        "server's max_connections was reached: other requests' connections fill it, in use or left open."
    )


def test_an_aborted_transaction_names_the_query() -> None:
    records = [record("unpatched", 1, 0, "server-error")]
    aborted = "current transaction is aborted, commands ignored until end of transaction block"
    trace = [event("query", 0, 2, 0.1, phase="endpoint (read_users)", connection=4, sql="SELECT user", error=aborted)]

    [diagnosis] = [r.diagnosis for r in diagnose(records, trace) if r.diagnosis]

    assert diagnosis.kind == "database-error" and diagnosis.connection == 4
    assert "ran the query SELECT user on worker thread 2" in diagnosis.text
    assert "its transaction was never rolled back" in diagnosis.text


def failing_with(index: int, type_: str, message: str) -> RequestRecord:
    broken = record("shared", 1, index, "server-error")
    raised = replace(CONNECTION_OPENED, request_id=broken.request_id, type=type_, message=message)
    return replace(broken, exceptions=(raised,), request_id=f"unpatched-t1-schedule-{index}")


ILLEGAL = "IllegalStateChangeError: Method 'close()' can't be called here; method '_connection_for_bind()' is..."


def test_one_session_closed_by_one_request_while_another_was_mid_operation_names_both_and_their_tasks() -> None:
    records = [record("unpatched", 1, 1), failing_with(2, "sqlalchemy.exc.IllegalStateChangeError", ILLEGAL[25:])]
    trace = [
        event("session", None, 0, -1.0, session=1),  # made at module level, before any request
        event("session-call", 1, 0, 0.30, task=8, session=1, sql="execute", start=0.10),
        event("session-close", 2, 0, 0.15, task=9, session=1, sql="close", start=0.14, error=ILLEGAL),
        event("session-close", 1, 0, 0.31, task=8, session=1, sql="close", start=0.305),
    ]

    [diagnosis] = [r.diagnosis for r in diagnose(records, trace) if r.diagnosis]

    assert diagnosis.kind == "shared-session"
    assert diagnosis.requests == ("unpatched-t1-schedule-2", "unpatched-t1-schedule-1")
    assert diagnosis.text == (
        "Request #2's async code used session #1 in task 9, made outside any request (the app's start-up), while "
        "request #1 used it too: one session, two requests at once. Request #2 closed it in task 9 while request #1 "
        "was mid-operation (its execute() began 0.040 s earlier in task 8). It failed with IllegalStateChangeError: "
        "Method 'close()' can't be called here; method '_connection_for_bind()' is...."
    )


def test_a_call_begun_before_the_failed_request_and_written_after_it_shares_the_session() -> None:
    concurrent = "This session is provisioning a new connection; concurrent operations are not permitted"
    failing = replace(failing_with(1, "sqlalchemy.exc.InvalidRequestError", concurrent), completed_at=0.14)
    records = [record("unpatched", 1, 0), failing]
    trace = [
        event("session-call", 1, 0, 0.13, task=9, session=1, sql="execute", start=0.12, error=concurrent),
        # Request #0's execute() began first, opened a connection and was written, as each call is, as it ended.
        event("session-begin", 0, 0, 0.25, task=8, session=1, connection=1),
        event("session-call", 0, 0, 0.30, task=8, session=1, sql="execute", start=0.10),
    ]

    [diagnosis] = [r.diagnosis for r in diagnose(records, trace) if r.diagnosis]

    assert diagnosis.kind == "shared-session" and diagnosis.requests[1] == "unpatched-t1-schedule-0"


def test_a_request_whose_shared_session_another_closed_under_it_names_the_closer() -> None:
    concurrent = "This session is provisioning a new connection; concurrent operations are not permitted"
    records = [failing_with(1, "sqlalchemy.exc.InvalidRequestError", concurrent), record("unpatched", 1, 2)]
    trace = [
        event("session-call", 1, 0, 0.30, task=8, session=1, sql="execute", start=0.10, error=concurrent),
        event("session-close", 2, 0, 0.15, task=9, session=1, sql="close", start=0.14),
    ]

    text = failed(records, trace)[1]

    assert text.startswith("Request #1's async code used session #1 in task 8, made before the trace began, while ")
    assert "Request #2 closed it in task 9 while request #1 was mid-operation." in text


def test_requests_one_after_another_on_one_worker_thread_do_not_share_a_session_at_once() -> None:
    pending = "This Session's transaction has been rolled back due to a previous exception during flush."
    records = [
        record("unpatched", 1, 4, "client-error"),
        failing_with(5, "sqlalchemy.exc.PendingRollbackError", pending),
    ]
    endpoint = "endpoint (place_order)"
    trace = [
        event("session", 4, 3, 0.10, phase=endpoint, session=7),
        event("session-call", 4, 3, 0.11, phase=endpoint, session=7, sql="add", start=0.105),
        event("session-call", 4, 3, 0.12, phase=endpoint, session=7, sql="commit", start=0.115, error="CHECK failed"),
        event("session-call", 5, 3, 0.30, phase=endpoint, session=7, sql="add", start=0.29),
        event("session-call", 5, 3, 0.31, phase=endpoint, session=7, sql="commit", start=0.30, error=pending),
    ]

    [diagnosis] = [r.diagnosis for r in diagnose(records, trace) if r.diagnosis]

    assert diagnosis.kind == "carried-session"
    assert diagnosis.requests == ("unpatched-t1-schedule-5", "unpatched-t1-schedule-4") and diagnosis.threads == (3,)
    assert diagnosis.text == (
        "Request #5's endpoint (place_order) used session #7 on worker thread 3, made by request #4, which request #4 "
        "had used before it on worker thread 3 and never closed (a scoped_session keeps one session per thread until "
        "remove()): request #5 got it with whatever request #4 left in it. Request #4's commit() had failed there "
        f"(CHECK failed). It failed with PendingRollbackError: {pending}."
    )


def test_a_session_its_last_user_closed_is_not_carried() -> None:
    records = [record("unpatched", 1, 4), failing_with(5, "ValueError", "no")]
    trace = [
        event("session-call", 4, 3, 0.11, session=7, sql="add", start=0.105),
        event("session-close", 4, 3, 0.12, session=7, sql="close", start=0.115),
        event("session-call", 5, 3, 0.30, session=7, sql="add", start=0.29),
    ]

    assert diagnose(records, trace)[1].diagnosis.kind == "unexplained"  # type: ignore[union-attr]


QUEUE_POOL = "TimeoutError: QueuePool limit of size 2 overflow 0 reached, connection timed out, timeout 5.00"


def test_a_sqlalchemy_pool_with_no_free_connection_names_who_held_them_and_what_the_collector_did() -> None:
    records = [record("unpatched", 1, 0), record("unpatched", 1, 1), failing_with(2, "TimeoutError", QUEUE_POOL)]
    trace = [
        event("checkout", 0, 0, 0.10, task=4, connection=1),
        event("checkout", 1, 0, 0.11, task=5, connection=2),
        event("checkin", 1, 0, 0.20, task=5, connection=2),
        event("checkout", 1, 0, 0.21, task=5, connection=2),
        event("checkout", 2, 0, 5.30, task=6, error=QUEUE_POOL),
        event("checkin", None, 0, 7.10, connection=1, auto=True),
    ]

    [diagnosis] = [r.diagnosis for r in diagnose(records, trace) if r.diagnosis]

    assert diagnosis.kind == "pool-exhausted"
    assert diagnosis.requests == tuple(f"unpatched-t1-schedule-{n}" for n in (2, 0, 1))
    assert diagnosis.text == (
        f"Request #2's async code ran a checkout from the pool in task 6 and found no free connection in the pool "
        f"({QUEUE_POOL}); it waited and gave up. At that moment 2 connections were checked out: #1 by request #0 in "
        "its async code in task 4, never given back: the garbage collector returned it 7.000 s later; #2 by request "
        "#1 in its async code in task 5, never given back. 2 of them were never given back: leaked, the pool shrinks "
        "for good."
    )


def test_a_request_that_kept_its_checked_out_connection_is_named_with_it() -> None:
    records = [failing_with(3, "RuntimeError", "boom")]
    trace = [event("checkout", 3, 2, 0.1, phase="endpoint (read)", connection=4)]

    [diagnosis] = [r.diagnosis for r in diagnose(records, trace) if r.diagnosis]

    assert diagnosis.kind == "unreturned-connection" and diagnosis.connection == 4
    assert diagnosis.text == (
        "Request #3's endpoint (read) checked out connection #4 on worker thread 2 and never given back. "
        "It failed with RuntimeError: boom."
    )


def test_sqlalchemy_and_driver_errors_are_grouped_by_what_they_usually_mean() -> None:
    meanings = {
        "InterfaceError: cannot perform operation: another operation is in progress": "two requests used one "
        "connection at once",
        "OperationalError: database is locked": "SQLite's write lock",
        "ProgrammingError: Cannot operate on a closed database.": "closed under the request",
        "IntegrityError: UNIQUE constraint failed: user.email": "the same unique value",
    }
    for index, (error, meaning) in enumerate(meanings.items()):
        records = [failing_with(index, "Error", error)]
        trace = [event("db-error", index, 0, 0.1, task=3, connection=1, sql="INSERT user", error=error)]

        [diagnosis] = [r.diagnosis for r in diagnose(records, trace) if r.diagnosis]

        assert diagnosis.kind == "database-error", error
        assert f"ran the query INSERT user in task 3, and the database refused it ({error}): " in diagnosis.text
        assert meaning in diagnosis.text
