"""Why each failed request failed, in one paragraph derived from the server-side trace.

The cause the tutorial's bug leaves in the trace: a request's ``connect()`` raises
``Connection already opened.`` because the thread's connection state still holds a
connection another request opened (often Peewee itself, for the lazy ``user.items``
query during response validation) and never closed, because that request's own exit ran
on another thread. On a database server two more: a pool with no connection free
(Peewee's ``MaxConnectionsExceeded``; the paragraph names who held the pool's connections
and whether they ever gave them back), and the server's own errors (too many clients, a
connection closed under a request, an aborted transaction), each with what it usually
means. On SQLAlchemy (:mod:`harness.server.sqlalchemy_hooks`) the same pool paragraph, for its
``QueuePool limit ... reached``, and three more: one session used by two requests at once (the
asyncio session shared at module level: ``IllegalStateChangeError``, "concurrent operations are
not permitted"), a session that outlived the request that used it and reached the next one (a
``scoped_session`` never removed), and a connection checked out and never given back. When the
trace shows less than a cause, the paragraph says what was seen and no more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from harness.results import CauseCount, CauseKind, Diagnosis, RequestRecord, TraceEvent
from harness.trace import Hold, holds

CAUSE_WORDS: dict[CauseKind, str] = {
    "leaked-connection": "connect() found a connection another request left open on its thread",
    "double-connect": "connect() found a connection the same request had already opened",
    "startup-connection": "connect() found the connection the app opened at start-up still held",
    "pool-exhausted": "a connection was asked of the pool, which had none free, and the wait gave up",
    "database-error": "the database server refused a connection or a query",
    "shared-session": "two requests used one SQLAlchemy session at once",
    "carried-session": "a SQLAlchemy session another request used and never closed reached this one",
    "unreturned-connection": "the request checked out a pooled connection and never gave it back",
    "unexplained": "the trace shows the failure but not its cause",
    "no-trace": "the trace holds no event of the request",
}


@dataclass(kw_only=True)
class _Index:
    opened: dict[int, TraceEvent] = field(default_factory=dict)
    closed: dict[int, TraceEvent] = field(default_factory=dict)
    by_request: dict[str, list[TraceEvent]] = field(default_factory=dict)
    holds: list[Hold] = field(default_factory=list)
    sessions: dict[int, list[TraceEvent]] = field(default_factory=dict)


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
        if event.session is not None:
            index.sessions.setdefault(event.session, []).append(event)
    index.holds = holds(trace)
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
    return replace(diagnosis, text=_capitalised_text(diagnosis.text))


def _capitalised_text(text: str) -> str:
    return text[:1].upper() + text[1:]


def thread_name(thread: int) -> str:
    return "the event loop's thread" if thread == 0 else f"worker thread {thread}"


def place(event: TraceEvent) -> str:
    """Where an event ran: ``in task 3`` on the event loop, ``on worker thread 2`` in the thread pool."""
    return f"in task {event.task}" if event.task is not None else f"on {thread_name(event.thread)}"


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
    failed = next((e for e in events if e.kind in ("connect", "checkout") and e.error is not None), None)
    if failed is not None and _POOL_EMPTY.search(failed.error or ""):
        return _pool_exhausted(record, failed, index, names)
    used = _session_events(events)
    on_session = _shared_session(record, events, used, index, names) or _carried_session(record, used, index, names)
    if on_session is not None:
        return on_session
    refused = next((e for e in events if e.error is not None and _database_meaning(e.error)), None)
    if refused is not None:
        return _database_error(record, refused, names)
    kept = next((h for h in index.holds if h.out.request_id == record.request_id and not h.given_back), None)
    if kept is not None and kept.out.kind == "checkout":
        return _unreturned(record, kept, names)
    if failed is None or failed.kind != "connect":
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
        seen += f"; {errors[0].kind} {place(errors[0])} raised {errors[0].error!r}"
    return Diagnosis(
        kind="unexplained",
        text=seen + ".",
        threads=tuple(dict.fromkeys(e.thread for e in events)),
        requests=(record.request_id,),
    )


# Peewee's pool: "Exceeded maximum connections." at each try, "Max connections exceeded, timed out ..." at the end;
# SQLAlchemy's: "QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00".
_POOL_EMPTY = re.compile(r"exceeded maximum connections|max connections exceeded|pool limit of size", re.IGNORECASE)
MESSAGE_SHOWN = 1_000  # characters of a database's message quoted in a paragraph
_HOLDERS_SHOWN = 4
# PostgreSQL's (psycopg2's, asyncpg's), SQLite's and SQLAlchemy's messages a concurrency bug leaves, and what each
# usually means.
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
        re.compile(
            r"another (command|operation) is (already )?in progress|connection is busy|cursor already closed",
            re.IGNORECASE,
        ),
        "two requests used one connection at once (asyncpg allows one operation at a time on a connection)",
    ),
    (
        re.compile(r"cannot operate on a closed database|connection was closed in the middle", re.IGNORECASE),
        "the connection was closed under the request: by another request that shared it",
    ),
    (
        re.compile(r"objects created in a thread can only be used in that same thread", re.IGNORECASE),
        "a connection made on one thread was used on another: a session or connection shared between requests",
    ),
    (
        re.compile(r"database is locked", re.IGNORECASE),
        "another connection held SQLite's write lock past the busy timeout: a transaction left open, often by a "
        "session that was never closed",
    ),
    (
        re.compile(r"unique constraint failed|duplicate key value", re.IGNORECASE),
        "two requests wrote the same unique value: a check-then-insert race, or a retry of a write that had passed",
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
    """Who held the pool's connections when the request's connect() or checkout gave up, and what became of them."""
    name = names[record.request_id]
    held = [h for h in index.holds if h.out.time <= failed.time and (h.back is None or h.back.time > failed.time)]
    asked = "connect()" if failed.kind == "connect" else "a checkout from the pool"
    text = (
        f"{name}'s {_phase(failed)} ran {asked} {place(failed)} and found no free connection "
        f"in the pool ({failed.error}); it waited and gave up."
    )
    if held:
        never = [hold for hold in held if not hold.given_back]
        shown = "; ".join(_holder(hold, names) for hold in held[:_HOLDERS_SHOWN])
        more = f"; and {len(held) - _HOLDERS_SHOWN} more" if len(held) > _HOLDERS_SHOWN else ""
        text += f" At that moment {len(held)} connections were checked out: {shown}{more}."
        if never:
            text += f" {len(never)} of them were never given back: leaked, the pool shrinks for good."
        else:
            text += " Every one was given back later: the pool was too small for the requests in flight at once."
    return Diagnosis(
        kind="pool-exhausted",
        text=text,
        threads=tuple(dict.fromkeys((failed.thread, *(hold.out.thread for hold in held)))),
        requests=tuple(dict.fromkeys((record.request_id, *(h.out.request_id for h in held if h.out.request_id)))),
    )


def _holder(hold: Hold, names: dict[str, str]) -> str:
    opener = hold.out
    who = names.get(opener.request_id, opener.request_id) if opener.request_id else "the app's start-up"
    return f"#{hold.connection} by {who} in its {_phase(opener)} {place(opener)}, {fate_of(hold)}"


def fate_of(hold: Hold) -> str:
    """What became of a connection the app held: given back (when, where), or never."""
    back = hold.back
    if back is None:
        return "never given back"
    later = f"{back.time - hold.out.time:.3f} s later"
    if back.auto:
        return f"never given back: the garbage collector returned it {later}"
    return f"given back {later} {place(back)}"


def _session_events(events: list[TraceEvent]) -> dict[int, list[TraceEvent]]:
    sessions: dict[int, list[TraceEvent]] = {}
    for event in events:
        if event.session is not None:
            sessions.setdefault(event.session, []).append(event)
    return sessions


def _shared_session(
    record: RequestRecord,
    events: list[TraceEvent],
    used: dict[int, list[TraceEvent]],
    index: _Index,
    names: dict[str, str],
) -> Diagnosis | None:
    """A session the request used (``used``: its events by session) while another request was using it too, not
    one after the other on a thread."""
    end = record.completed_at if record.completed_at is not None else events[-1].time
    for session, own in used.items():
        start = min(_began(e) for e in own)
        spans: dict[str, list[TraceEvent]] = {}
        for event in index.sessions[session]:
            if event.request_id not in (None, record.request_id):
                spans.setdefault(event.request_id, []).append(event)
        threads = {e.thread for e in own}
        # A call is written as it ends: the first written may not be the first begun.
        others = [
            other
            for other, used in spans.items()
            if min(map(_began, used)) <= end
            and used[-1].time >= start
            and not ({e.thread for e in used} == threads and 0 not in threads)  # one worker thread: one after another
        ]
        if others:
            return _shared(record, session, own, others, index, names)
    return None


def _began(event: TraceEvent) -> float:
    return event.start if event.start is not None else event.time


def _shared(
    record: RequestRecord,
    session: int,
    own: list[TraceEvent],
    others: list[str],
    index: _Index,
    names: dict[str, str],
) -> Diagnosis:
    name = names[record.request_id]
    shown = [names.get(other, other) for other in others[:_HOLDERS_SHOWN]]
    more = f" and {len(others) - _HOLDERS_SHOWN} more" if len(others) > _HOLDERS_SHOWN else ""
    text = (
        f"{name}'s {_phase(own[0])} used session #{session} {place(own[0])}, {_made(session, record, index, names)}, "
        f"while {', '.join(shown)}{more} used it too: one session, two requests at once."
    )
    first = min(_began(e) for e in own)
    closes = [e for e in index.sessions[session] if e.kind == "session-close"]
    mine = next((e for e in own if e.kind == "session-close"), None)
    theirs = next((e for e in closes if e.request_id in others and first <= e.time), None)
    if mine is not None:
        busy = [e for e in index.sessions[session] if e.request_id in others and _began(e) < _began(mine)]
        if busy:
            last = busy[-1]
            other = names.get(last.request_id or "", "?")
            text += (
                f" {_capitalised_text(name)} closed it {place(mine)} while {other} was mid-operation "
                f"(its {_operation(last)} began {_began(mine) - _began(last):.3f} s earlier {place(last)})."
            )
    elif theirs is not None:
        closer = _capitalised_text(names.get(theirs.request_id or "", "?"))
        text += f" {closer} closed it {place(theirs)} while {name} was mid-operation."
    return Diagnosis(
        kind="shared-session",
        text=text + _raised(record),
        threads=tuple(dict.fromkeys(e.thread for e in own)),
        requests=(record.request_id, *others),
    )


def _carried_session(
    record: RequestRecord, used: dict[int, list[TraceEvent]], index: _Index, names: dict[str, str]
) -> Diagnosis | None:
    """A session another request used before this one and never closed, which this one got (a scoped_session's)."""
    for session, own in used.items():
        before = [
            e for e in index.sessions[session] if e.request_id not in (None, record.request_id) and e.time < own[0].time
        ]
        if not before:
            continue
        other = before[-1].request_id
        assert other is not None
        theirs = [e for e in index.sessions[session] if e.request_id == other]
        if any(e.kind == "session-close" and e.error is None for e in theirs):
            continue
        name, who = names[record.request_id], names.get(other, other)
        same = {e.thread for e in theirs} == {e.thread for e in own} and 0 not in {e.thread for e in own}
        how = " (a scoped_session keeps one session per thread until remove())" if same else ""
        made = _made(session, record, index, names)
        text = (
            f"{name}'s {_phase(own[0])} used session #{session} {place(own[0])}, {made}, "
            f"which {who} had used before it {place(theirs[-1])} and never closed{how}: {name} got it with whatever "
            f"{who} left in it."
        )
        failure = next((e for e in index.by_request.get(other, []) if e.error is not None), None)
        if failure is not None:
            failed_with = _first_line(failure.error or "")
            text += f" {_capitalised_text(who)}'s {_operation(failure)} had failed there ({failed_with})."
        return Diagnosis(
            kind="carried-session",
            text=text + _raised(record),
            threads=tuple(dict.fromkeys((*(e.thread for e in own), *(e.thread for e in theirs)))),
            requests=(record.request_id, other),
        )
    return None


def _made(session: int, record: RequestRecord, index: _Index, names: dict[str, str]) -> str:
    made = next((e for e in index.sessions[session] if e.kind == "session"), None)
    if made is None:
        return "made before the trace began"
    if made.request_id is None:
        return "made outside any request (the app's start-up)"
    return "made by this request" if made.request_id == record.request_id else f"made by {names[made.request_id]}"


_OPERATIONS = {
    "session-begin": "transaction",
    "session-end": "transaction's end",
    "session-close": "close()",
    "session": "making of it",
    "db-error": "query",
    "checkout": "checkout",
    "connect": "connect()",
    "query": "query",
}


def _operation(event: TraceEvent) -> str:
    if event.kind == "session-call":
        return f"{event.sql}()"
    return _OPERATIONS.get(event.kind, event.kind)


def _raised(record: RequestRecord) -> str:
    if not record.exceptions:
        return ""
    exception = record.exceptions[0]
    return f" It failed with {exception.type.rsplit('.', 1)[-1]}: {_first_line(exception.message)}."


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "..."


def _unreturned(record: RequestRecord, kept: Hold, names: dict[str, str]) -> Diagnosis:
    return Diagnosis(
        kind="unreturned-connection",
        text=f"{names[record.request_id]}'s {_phase(kept.out)} checked out connection #{kept.connection} "
        f"{place(kept.out)} and {fate_of(kept)}." + _raised(record),
        threads=(kept.out.thread,),
        requests=(record.request_id,),
        connection=kept.connection,
    )


def _database_error(record: RequestRecord, refused: TraceEvent, names: dict[str, str]) -> Diagnosis:
    what = (
        f"the query {refused.sql}"
        if refused.sql
        else "a query"
        if refused.kind in ("query", "db-error")
        else _operation(refused)
    )
    error = _first_line(refused.error or "", MESSAGE_SHOWN)
    return Diagnosis(
        kind="database-error",
        text=f"{names[record.request_id]}'s {_phase(refused)} ran {what} {place(refused)}, and the "
        f"database refused it ({error}): {_database_meaning(refused.error or '')}.",
        threads=(refused.thread,),
        requests=(record.request_id,),
        connection=refused.connection,
    )


def _phase(event: TraceEvent) -> str:
    if event.phase is None and event.task is not None:
        return "async code"
    return event.phase or "code outside any thread-pool job"


def request_name(record: RequestRecord) -> str:
    return f"request #{record.index}" if record.phase == "schedule" else f"seed request #{record.index}"
