"""Why each failed request failed, in one paragraph derived from the server-side trace.

The cause the tutorial's bug leaves in the trace: a request's ``connect()`` raises
``Connection already opened.`` because the thread's connection state still holds a
connection another request opened (often Peewee itself, for the lazy ``user.items``
query during response validation) and never closed, because that request's own exit ran
on another thread. On a database server two more: a pool with no connection free
(Peewee's ``MaxConnectionsExceeded``; the paragraph names who held the pool's connections
and whether they ever gave them back), and the server's own errors (too many clients, a
connection closed under a request, an aborted transaction), each with what it usually
means. When the trace shows less than a cause, the paragraph says what was seen and no more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from harness.results import CauseCount, CauseKind, Diagnosis, RequestRecord, TraceEvent

CAUSE_WORDS: dict[CauseKind, str] = {
    "leaked-connection": "connect() found a connection another request left open on its thread",
    "double-connect": "connect() found a connection the same request had already opened",
    "startup-connection": "connect() found the connection the app opened at start-up still held",
    "pool-exhausted": "connect() found no free connection in the pool and gave up waiting",
    "database-error": "the database server refused a connection or a query",
    "unexplained": "the trace shows the failure but not its cause",
    "no-trace": "the trace holds no event of the request",
}


@dataclass(kw_only=True)
class _Index:
    opened: dict[int, TraceEvent] = field(default_factory=dict)
    closed: dict[int, TraceEvent] = field(default_factory=dict)
    by_request: dict[str, list[TraceEvent]] = field(default_factory=dict)


def diagnose(records: Sequence[RequestRecord], trace: Sequence[TraceEvent]) -> list[RequestRecord]:
    """``records`` with a diagnosis on each one that ended in a 5xx."""
    index = _Index()
    for event in trace:
        if event.kind == "connect" and event.error is None and event.connection is not None:
            index.opened.setdefault(event.connection, event)
        if event.kind == "close" and event.connection is not None:
            index.closed.setdefault(event.connection, event)
        if event.request_id:
            index.by_request.setdefault(event.request_id, []).append(event)
    names = {record.request_id: request_name(record) for record in records}
    return [
        replace(record, diagnosis=_capitalised(_diagnose(record, index, names)))
        if record.outcome == "server-error"
        else record
        for record in records
    ]


def count_causes(records: Iterable[RequestRecord]) -> tuple[CauseCount, ...]:
    """Diagnoses grouped by kind, most frequent first, each with its first paragraph."""
    groups: dict[CauseKind, list[tuple[str, str]]] = {}
    for record in records:
        if record.diagnosis is not None:
            groups.setdefault(record.diagnosis.kind, []).append((record.request_id, record.diagnosis.text))
    return tuple(
        CauseCount(kind=kind, count=len(seen), first_request_id=seen[0][0], example=seen[0][1])
        for kind, seen in sorted(groups.items(), key=lambda item: -len(item[1]))
    )


def _capitalised(diagnosis: Diagnosis) -> Diagnosis:
    return replace(diagnosis, text=diagnosis.text[:1].upper() + diagnosis.text[1:])


def thread_name(thread: int) -> str:
    return "the event loop's thread" if thread == 0 else f"worker thread {thread}"


def _diagnose(record: RequestRecord, index: _Index, names: dict[str, str]) -> Diagnosis:
    name = names[record.request_id]
    events = index.by_request.get(record.request_id, [])
    if not events:
        return Diagnosis(
            kind="no-trace",
            text=f"{name} failed, and the trace holds no event of it (the server may have stopped first, "
            "or the trace reached its limit).",
            threads=(),
            requests=(record.request_id,),
        )
    failed = next((e for e in events if e.kind == "connect" and e.error is not None), None)
    if failed is not None and _POOL_EMPTY.search(failed.error or ""):
        return _pool_exhausted(record, failed, index, names)
    refused = next((e for e in events if e.error is not None and _database_meaning(e.error)), None)
    if refused is not None:
        return _database_error(record, refused, names)
    if failed is None:
        return _what_was_seen(record, events, index, names)
    where = f"{name}'s {_phase(failed)} ran connect() on {thread_name(failed.thread)}"
    opener = index.opened.get(failed.connection) if failed.connection is not None else None
    if opener is None:
        return Diagnosis(
            kind="unexplained",
            text=f"{where}, which raised {failed.error!r}; the trace does not show which connection "
            "that thread's state still held.",
            threads=(failed.thread,),
            requests=(record.request_id,),
            connection=failed.connection,
        )
    held = f"connection #{failed.connection}"
    opened_how = " (Peewee opened it by itself for a query)" if opener.auto else ""
    if opener.request_id is None:
        return Diagnosis(
            kind="startup-connection",
            text=f"{where}, which still held {held}, opened outside any request on {thread_name(opener.thread)} "
            "(the app's start-up) and not closed there.",
            threads=(failed.thread, opener.thread),
            requests=(record.request_id,),
            connection=failed.connection,
        )
    if opener.request_id == record.request_id:
        return Diagnosis(
            kind="double-connect",
            text=f"{where}, which already held {held}: the same request had opened it during its "
            f"{_phase(opener)} on {thread_name(opener.thread)}{opened_how}.",
            threads=(failed.thread, opener.thread),
            requests=(record.request_id,),
            connection=failed.connection,
        )
    other = names.get(opener.request_id, opener.request_id)
    return Diagnosis(
        kind="leaked-connection",
        text=f"{where}, which still held {held}, opened there by {other} during its {_phase(opener)}{opened_how}; "
        + _fate(other, index, opener, failed),
        threads=tuple(dict.fromkeys((failed.thread, opener.thread))),
        requests=(record.request_id, opener.request_id),
        connection=failed.connection,
    )


def _fate(other: str, index: _Index, opener: TraceEvent, failed: TraceEvent) -> str:
    """Where the request that left the connection behind went instead, as far as the trace shows it."""
    assert opener.request_id is not None and failed.connection is not None
    events = index.by_request.get(opener.request_id, [])
    later = [e for e in events if e.phase is not None and e.time > opener.time]
    elsewhere = next((e for e in later if e.thread != opener.thread), None)
    moved = f"its {_phase(elsewhere)} ran on {thread_name(elsewhere.thread)}" if elsewhere else ""
    close = next((e for e in reversed(events) if e.kind == "close"), None)
    if close is not None and close.connection != failed.connection:
        if elsewhere is not None and (elsewhere.phase, elsewhere.thread) == (close.phase, close.thread):
            moved = ""  # the exit itself was where it went
        closed = f"closed connection #{close.connection}" if close.connection is not None else "closed nothing"
        ended = f"its {_phase(close)} ran on {thread_name(close.thread)}, where it {closed} instead"
        return f"{other} never closed it: " + "; ".join(filter(None, [moved, ended])) + "."
    if close is None or close.time > failed.time:
        return f"{other} was still in flight and had moved on" + (f": {moved}." if moved else ".")
    return f"{other} closed it, but only after this connect()."


def _what_was_seen(record: RequestRecord, events: list[TraceEvent], index: _Index, names: dict[str, str]) -> Diagnosis:
    name = names[record.request_id]
    phases = [f"{e.phase} on {thread_name(e.thread)}" for e in events if e.kind == "phase"]
    used = sorted({e.connection for e in events if e.connection is not None})
    errors = [e for e in events if e.error is not None]
    seen = f"{name} failed; its trace shows " + ("; ".join(phases) if phases else "no thread-pool phase")
    if used:
        owners = [
            f"#{n} (opened by {names.get(index.opened[n].request_id or '', 'no request')})"
            if n in index.opened
            else f"#{n}"
            for n in used
        ]
        seen += f"; connections used: {', '.join(owners)}"
    if errors:
        seen += f"; {errors[0].kind} on {thread_name(errors[0].thread)} raised {errors[0].error!r}"
    return Diagnosis(
        kind="unexplained",
        text=seen + ".",
        threads=tuple(dict.fromkeys(e.thread for e in events)),
        requests=(record.request_id,),
    )


# Peewee's pool: "Exceeded maximum connections." at each try, "Max connections exceeded, timed out ..." at the end.
_POOL_EMPTY = re.compile(r"exceeded maximum connections|max connections exceeded", re.IGNORECASE)
_HOLDERS_SHOWN = 4
# PostgreSQL's (and psycopg2's) messages a concurrency bug leaves, and what each usually means.
_DATABASE_ERRORS = (
    (
        re.compile(r"too many clients|remaining connection slots are reserved", re.IGNORECASE),
        "the server's max_connections was reached: other requests' connections fill it, in use or left open",
    ),
    (
        re.compile(r"connection already closed|server closed the connection|terminating connection", re.IGNORECASE),
        "the connection was closed under the request: by another request that shared it, or by the server",
    ),
    (
        re.compile(r"current transaction is aborted", re.IGNORECASE),
        "an earlier statement on the same connection failed and its transaction was never rolled back: "
        "another request's error on a connection they shared",
    ),
    (
        re.compile(r"another command is already in progress|connection is busy|cursor already closed", re.IGNORECASE),
        "two threads used one connection at once",
    ),
    (re.compile(r"deadlock detected", re.IGNORECASE), "two transactions waited on each other's locks"),
    (
        re.compile(r"could not connect to server|connection refused|connection to server .* failed", re.IGNORECASE),
        "the app could not reach the database server",
    ),
)


def _database_meaning(error: str) -> str | None:
    return next((meaning for pattern, meaning in _DATABASE_ERRORS if pattern.search(error)), None)


def _pool_exhausted(record: RequestRecord, failed: TraceEvent, index: _Index, names: dict[str, str]) -> Diagnosis:
    """Who held the pool's connections when the request's connect() first found none free, and what became of them."""
    name = names[record.request_id]
    held = sorted(
        (
            opener
            for number, opener in index.opened.items()
            if opener.time <= failed.time and (number not in index.closed or index.closed[number].time > failed.time)
        ),
        key=lambda opener: opener.time,
    )
    text = (
        f"{name}'s {_phase(failed)} ran connect() on {thread_name(failed.thread)} and found no free connection "
        f"in the pool ({failed.error}); it waited and gave up."
    )
    if held:
        never = [opener for opener in held if opener.connection not in index.closed]
        shown = "; ".join(_holder(opener, index, names) for opener in held[:_HOLDERS_SHOWN])
        more = f"; and {len(held) - _HOLDERS_SHOWN} more" if len(held) > _HOLDERS_SHOWN else ""
        text += f" At that moment {len(held)} connections were checked out: {shown}{more}."
        if never:
            text += f" {len(never)} of them were never given back: leaked, the pool shrinks for good."
        else:
            text += " Every one was given back later: the pool was too small for the requests in flight at once."
    return Diagnosis(
        kind="pool-exhausted",
        text=text,
        threads=tuple(dict.fromkeys((failed.thread, *(opener.thread for opener in held)))),
        requests=tuple(dict.fromkeys((record.request_id, *(o.request_id for o in held if o.request_id)))),
    )


def _holder(opener: TraceEvent, index: _Index, names: dict[str, str]) -> str:
    assert opener.connection is not None
    who = names.get(opener.request_id, opener.request_id) if opener.request_id else "the app's start-up"
    close = index.closed.get(opener.connection)
    fate = (
        f"given back {close.time - opener.time:.3f} s later on {thread_name(close.thread)}"
        if close
        else "never given back"
    )
    return f"#{opener.connection} by {who} in its {_phase(opener)} on {thread_name(opener.thread)}, {fate}"


def _database_error(record: RequestRecord, refused: TraceEvent, names: dict[str, str]) -> Diagnosis:
    what = "connect()" if refused.kind == "connect" else f"the query {refused.sql}" if refused.sql else "a query"
    error = (refused.error or "").strip().splitlines()[0]
    return Diagnosis(
        kind="database-error",
        text=f"{names[record.request_id]}'s {_phase(refused)} ran {what} on {thread_name(refused.thread)}, and the "
        f"database refused it ({error}): {_database_meaning(refused.error or '')}.",
        threads=(refused.thread,),
        requests=(record.request_id,),
        connection=refused.connection,
    )


def _phase(event: TraceEvent) -> str:
    return event.phase or "code outside any thread-pool job"


def request_name(record: RequestRecord) -> str:
    return f"request #{record.index}" if record.phase == "schedule" else f"seed request #{record.index}"
