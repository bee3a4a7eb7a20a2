"""Why each failed request failed, in one paragraph derived from the server-side trace.

The cause the tutorial's bug leaves in the trace: a request's ``connect()`` raises
``Connection already opened.`` because the thread's connection state still holds a
connection another request opened (often Peewee itself, for the lazy ``user.items``
query during response validation) and never closed, because that request's own exit ran
on another thread. When the trace shows less than a cause, the paragraph says what was
seen and no more.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from harness.results import CauseCount, CauseKind, Diagnosis, RequestRecord, TraceEvent

CAUSE_WORDS: dict[CauseKind, str] = {
    "leaked-connection": "connect() found a connection another request left open on its thread",
    "double-connect": "connect() found a connection the same request had already opened",
    "startup-connection": "connect() found the connection the app opened at start-up still held",
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


def _phase(event: TraceEvent) -> str:
    return event.phase or "code outside any thread-pool job"


def request_name(record: RequestRecord) -> str:
    return f"request #{record.index}" if record.phase == "schedule" else f"seed request #{record.index}"
