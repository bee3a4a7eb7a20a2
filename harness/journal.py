"""``records.jsonl``: each request record of the trials under way, appended the moment it changes.

A trial is recorded whole in ``trials.jsonl`` when it ends. The journal is the safety net
of the trials under way, for a harness that dies without a chance to write (SIGKILL, a
power cut): every request is appended when it is sent and again when its outcome is
known, one flushed JSON line each, and :func:`recover` rebuilds the unfinished trials from
it. It is cleared after each round, whose trials are in ``trials.jsonl`` by then. The last
line of a request wins; a line cut short by the kill is skipped.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import ResultsError
from harness.files import JsonLines, read_json_lines
from harness.launcher import EVENTS_FILE
from harness.results import (
    JOURNAL_FILE,
    RESULTS_FILE,
    RequestRecord,
    RunResult,
    TrialResult,
    read_results,
    rebuild,
)
from harness.runner import attach_exceptions, in_trial_order, read_events
from harness.variant import DEFAULT_DATABASE, Database
from harness.verdict import judged_run

RECOVERED = "interrupted: the harness ended before this trial did; its requests were recovered from " + JOURNAL_FILE


class Journal(JsonLines):
    """An append-only file of request records, each line on disk when :meth:`append` returns."""

    def append(self, record: RequestRecord) -> None:
        self.add(_without_exceptions(record))


def read_journal(path: Path) -> list[RequestRecord]:
    """The latest state of every request in the journal, in the order first seen."""
    latest: dict[str, RequestRecord] = {}
    for data in read_json_lines(path):
        try:
            record = rebuild(RequestRecord, data)
        except ValueError:
            continue  # a line of another shape, or damaged: the journal is a safety net, not the record
        latest[record.request_id] = record
    return list(latest.values())


def recover(run_dir: Path) -> tuple[RunResult, int]:
    """The run's results with its unfinished trials rebuilt from the journal; and how many were rebuilt.

    Damage in ``results.json`` or ``trials.jsonl`` is a results error; a journal line of another
    shape is skipped, as a line cut short is.
    """
    try:
        return _recover(run_dir)
    except OSError as exc:  # a journal or a server's events that is a folder, or unreadable
        raise ResultsError(f"cannot read {exc.filename or run_dir}: {exc.strerror or exc}") from None


def _recover(run_dir: Path) -> tuple[RunResult, int]:
    result = read_results(run_dir / RESULTS_FILE)
    done = {(t.variant, t.trial) for t in result.trials}
    unfinished: dict[tuple[str, int], list[RequestRecord]] = {}
    for record in read_journal(run_dir / JOURNAL_FILE):
        if (record.variant, record.trial) not in done:
            unfinished.setdefault((record.variant, record.trial), []).append(record)
    if any(variant not in result.variants for variant, _ in unfinished):
        raise ResultsError(f"{run_dir / JOURNAL_FILE} names variants that {run_dir / RESULTS_FILE} does not run")
    rebuilt = [
        _rebuild_trial(run_dir, variant, trial, records, result.databases.get(variant, DEFAULT_DATABASE))
        for (variant, trial), records in unfinished.items()
    ]
    recovered = judged_run(
        result.scenario,
        {v.variant: v.expected for v in result.verdicts},
        [*result.trials, *rebuilt],
        confidence=result.confidence,
        started_at=result.started_at,
        duration=result.duration,
        complete=result.complete and not rebuilt,
        environment=result.environment,
        jobs=result.jobs,
        trace=result.trace,
        url=result.url,
        databases=result.databases,
        database_server=result.database_server,
        hosts=result.hosts,
        explore=result.explore,
    )
    return recovered, len(rebuilt)


def _rebuild_trial(
    run_dir: Path, variant: str, trial: int, records: list[RequestRecord], database: Database
) -> TrialResult:
    server_dir = run_dir / "servers" / f"{variant}-trial{trial}"
    joined, unmatched = attach_exceptions(in_trial_order(records), read_events(server_dir / EVENTS_FILE))
    return TrialResult(
        variant=variant,
        trial=trial,
        started_at=_created(server_dir),
        server_dir=str(server_dir),
        pid=None,
        port=None,
        records=tuple(joined),
        unmatched_exceptions=tuple(unmatched),
        error=RECOVERED,
        database=database,
    )


def _created(directory: Path) -> str:
    """When the trial's server folder was made, which is when the trial started ("" if it never was)."""
    try:
        return datetime.fromtimestamp(directory.stat().st_mtime, UTC).isoformat(timespec="milliseconds")
    except FileNotFoundError:
        return ""


def _without_exceptions(record: RequestRecord) -> dict[str, Any]:
    # Exceptions (and causes) are joined from the server's own files when the trial ends.
    return {f.name: getattr(record, f.name) for f in _JOURNALLED}


_JOURNALLED = [f for f in dataclasses.fields(RequestRecord) if f.name not in ("exceptions", "diagnosis")]
