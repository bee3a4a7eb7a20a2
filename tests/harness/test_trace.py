"""Connection figures from a trace: what the app held, at most at once, and never gave back; whether it pools."""

from __future__ import annotations

from harness.results import TraceEvent
from harness.trace import holds, most_checked_out, shows_pool, traces_orm, unclosed_connections


def event(kind: str, time: float, connection: int | None = None, **fields: object) -> TraceEvent:
    return TraceEvent(kind=kind, request_id="r", thread=0, time=time, connection=connection, **fields)  # type: ignore[arg-type]


def test_a_pool_lends_one_connection_many_times_and_each_checkout_ends_at_its_checkin() -> None:
    trace = [
        event("database", 0.0, sql="QueuePool"),
        event("checkout", 0.1, 1),
        event("checkout", 0.2, 2),
        event("checkin", 0.3, 1),
        event("checkout", 0.3, 1),  # lent on at once: still two out, not three
        event("checkin", 0.4, 2),
        event("checkout", 0.5, 2),
        event("checkin", 0.9, 2, auto=True),  # the garbage collector's, not the app's
    ]

    assert [(h.connection, h.out.time, h.back.time if h.back else None) for h in holds(trace)] == [
        (1, 0.1, 0.3),
        (2, 0.2, 0.4),
        (1, 0.3, None),
        (2, 0.5, 0.9),
    ]
    assert unclosed_connections(holds(trace)) == 2  # #1 still out, #2 returned by the collector
    assert most_checked_out(holds(trace)) == 2
    assert traces_orm(trace) and shows_pool(trace)


def test_peewee_numbers_each_open_and_a_failed_connect_holds_nothing() -> None:
    trace = [
        event("database", 0.0, sql="SqliteDatabase"),
        event("connect", 0.1, 1),
        event("connect", 0.2, 2),
        event("connect", 0.25, None, error="Connection already opened."),
        event("close", 0.3, 1),
    ]

    assert unclosed_connections(holds(trace)) == 1 and most_checked_out(holds(trace)) == 2
    assert not shows_pool(trace)


def test_only_a_pool_that_keeps_connections_shows_one() -> None:
    assert shows_pool([event("database", 0.0, sql="PooledPostgresqlDatabase")])
    assert shows_pool([event("database", 0.0, sql="AsyncAdaptedQueuePool")])
    assert not shows_pool([event("database", 0.0, sql="NullPool")])
    assert not traces_orm([event("phase", 0.0)]) and most_checked_out(holds([])) == 0
