"""The server-side trace: hooks on their own, then captured from real servers."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import types
from dataclasses import replace
from pathlib import Path

import pytest

from harness.config import builtin_config
from harness.files import make_run_dir
from harness.pipeline import execute
from harness.plan import RunPlan
from harness.results import TrialResult
from harness.scenario import load_scenario, load_scenario_file
from harness.server.tracer import MESSAGE_LIMIT, Tracer, _hook_peewee, bounded, current_request, phase_name
from harness.trace import TRACE_FILE, read_trace
from harness.variant import Variant

ENTER, EXIT = "dependency enter (get_db)", "dependency exit (get_db)"


def get_db() -> object:
    yield None


def read_slow_users() -> None:
    pass


class Field:
    def validate(self) -> None:
        pass


def test_thread_pool_jobs_are_named_in_fastapis_words() -> None:
    manager = contextlib.contextmanager(get_db)()

    assert phase_name(functools.partial(manager.__enter__), None) == ENTER
    assert phase_name(manager.__exit__, None) == EXIT
    assert phase_name(functools.partial(Field().validate, 1, loc=("response",)), None) == "response validation"
    # FastAPI >= 0.12x hands a sync endpoint to the pool wrapped as `function=`.
    wrapped = functools.partial(functools.partial(print, function=read_slow_users, arguments={}))
    assert phase_name(wrapped, read_slow_users) == "endpoint (read_slow_users)"
    assert phase_name(read_slow_users, None) == "read_slow_users"


def test_the_trace_stops_at_its_limit_with_one_line_that_says_so(tmp_path: Path) -> None:
    file = io.BytesIO()
    tracer = Tracer(file, limit=3)
    current_request.set("r1")

    for _ in range(5):
        tracer.event("query", connection=1)

    lines = [json.loads(line) for line in file.getvalue().splitlines()]
    assert [line["kind"] for line in lines] == ["query", "query", "query", "truncated"]
    assert {line["request_id"] for line in lines[:3]} == {"r1"}
    path = tmp_path / TRACE_FILE
    path.write_bytes(file.getvalue() + b'{"kind": "query", "request_id": "r1", "thr')  # cut short by a kill
    events, truncated = read_trace(path, origin=lines[0]["time"])
    assert len(events) == 3 and truncated and events[0].time == 0.0


def test_a_module_named_peewee_that_is_not_peewee_is_left_alone() -> None:
    own = types.ModuleType("peewee")
    own.Database = "not a class"  # type: ignore[attr-defined]

    _hook_peewee(Tracer(io.BytesIO()), own)

    assert own.Database == "not a class"  # type: ignore[attr-defined]


def test_connections_are_numbered_in_the_order_opened_and_forgotten_when_closed() -> None:
    tracer = Tracer(io.BytesIO())
    first, second = object(), object()

    assert (tracer.opened(first), tracer.opened(second)) == (1, 2)
    assert tracer.number(first, forget=True) == 1
    assert tracer.number(first) is None and tracer.number(second) == 2


def _events_of(trial: TrialResult) -> dict[str, list[str]]:
    phases: dict[str, list[str]] = {}
    for event in trial.trace:
        if event.kind == "phase" and event.request_id:
            phases.setdefault(event.request_id, []).append(event.phase or "")
    return phases


@pytest.mark.e2e
def test_a_real_burst_is_traced_per_request_and_every_5xx_gets_a_cause(tmp_path: Path) -> None:
    scenario = replace(load_scenario("burst"), trials=1)
    plan = RunPlan(
        scenario=scenario,
        variants=tuple(builtin_config().get_variants(["unpatched", "patched"])),  # the builds with get_db
        run_dir=make_run_dir(tmp_path, scenario.name),
    )

    result = execute(plan)

    for trial in result.trials:
        ids = {r.request_id for r in trial.records}
        assert trial.trace and not trial.trace_truncated
        assert {e.request_id for e in trial.trace} <= ids | {None}
        phases = _events_of(trial)
        for r in trial.records:
            if r.outcome == "ok" and r.path == "/slowusers/":
                assert phases[r.request_id][:1] == [ENTER]
                assert {"endpoint (read_slow_users)", "response validation", EXIT} <= set(phases[r.request_id])
            elif r.status is not None:
                assert r.request_id in phases, r  # every answered request left a trace
        # anyio copies the context into its worker threads: the request id set by the probe
        # reaches every Peewee call made for a request.
        worker_events = [e for e in trial.trace if e.thread > 0 and e.kind != "phase"]
        assert worker_events and all(e.request_id in ids for e in worker_events)
        assert all(e.thread > 0 for e in trial.trace if e.kind == "phase")
    unpatched, patched = result.trials
    failures = [r for r in unpatched.records if r.outcome == "server-error"]
    assert failures, "100 requests at once failed the unpatched build in every measured trial"
    for r in failures:
        assert r.diagnosis is not None and r.diagnosis.kind in ("leaked-connection", "double-connect"), r.diagnosis
        assert "worker thread" in r.diagnosis.text and r.diagnosis.threads
    assert sum(cause.count for cause in result.summaries[0].causes) == len(failures)
    opener: dict[int, str | None] = {}
    for e in patched.trace:
        if e.kind == "connect" and e.error is None and e.connection is not None:
            opener[e.connection] = e.request_id
        elif e.connection is not None:
            assert opener[e.connection] == e.request_id  # the patch: a request's connection stays its own


@pytest.mark.e2e
def test_without_the_trace_no_file_is_written_and_no_cause_given(tmp_path: Path) -> None:
    scenario = replace(load_scenario("burst"), trials=1)
    plan = RunPlan(
        scenario=scenario,
        variants=(builtin_config().variants["unpatched"],),
        run_dir=make_run_dir(tmp_path, scenario.name),
        trace=False,
    )

    [trial] = execute(plan).trials

    assert trial.trace == () and not (Path(trial.server_dir) / TRACE_FILE).exists()
    assert all(r.diagnosis is None for r in trial.records)


def test_a_huge_message_is_kept_as_its_start_and_end_with_the_cut_counted() -> None:
    message = "start" + "y" * 50_000_000 + "end"
    kept = bounded(message)
    assert kept.startswith("starty") and kept.endswith("yend") and "(cut: 49,998,008 characters)" in kept
    assert len(kept) < MESSAGE_LIMIT + 50
    assert bounded("short") == "short"


def test_each_event_is_one_json_line_whatever_text_its_fields_hold() -> None:
    file = io.BytesIO()
    tracer = Tracer(file)
    current_request.set('r"1\\')
    fields = {"connection": 7, "start": 0.25, "auto": False, "error": 'line\n"quoted" \\ é \u2028 \x00', "sql": None}

    tracer.event("db-error", **fields)
    tracer.event("checkin", auto=True)

    first, second = file.getvalue().decode().splitlines()
    assert json.loads(first) == {
        "kind": "db-error",
        "request_id": 'r"1\\',
        "thread": 0,
        "task": None,
        "phase": None,
        "time": json.loads(first)["time"],
        **fields,
    }
    assert json.loads(second)["auto"] is True and json.loads(second)["time"] >= json.loads(first)["time"] > 0


SQLALCHEMY_ONLY = """\
import sys
from fastapi import FastAPI
from sqlalchemy import create_engine, text

engine = create_engine("sqlite://")
app = FastAPI()


@app.get("/")
def read() -> dict[str, str]:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    if "peewee" in sys.modules:
        raise RuntimeError("the server imported Peewee")
    return {}
"""
PEEWEE_IN_ITS_FACTORY = """\
from fastapi import FastAPI


def create() -> FastAPI:
    import peewee

    db = peewee.SqliteDatabase("app.sqlite3")
    app = FastAPI()

    @app.get("/")
    def read() -> dict[str, str]:
        db.connect()
        db.execute_sql("SELECT 1")
        db.close()
        return {}

    return app
"""


@pytest.mark.e2e
def test_the_orm_the_app_does_not_import_is_never_imported_and_the_one_it_imports_late_is_traced(
    tmp_path: Path,
) -> None:
    (tmp_path / "sqlalchemy_only.py").write_text(SQLALCHEMY_ONLY)
    (tmp_path / "peewee_late.py").write_text(PEEWEE_IN_ITS_FACTORY)
    # Started cold (PYTHONPATH is read only as a process starts), so no warm parent has imported Peewee first.
    cold = {"PYTHONPATH": str(tmp_path)}
    variants = (
        Variant(name="sqlalchemy", app="sqlalchemy_only:app", app_dir=str(tmp_path), env=cold),
        Variant(name="peewee", app="peewee_late:create", factory=True, app_dir=str(tmp_path), env=cold),
    )
    (tmp_path / "three.toml").write_text(
        'trials = 1\n[schedule]\nkind = "burst"\nrequests = 3\n[schedule.request]\npath = "/"'
    )
    plan = RunPlan(
        scenario=load_scenario_file(tmp_path / "three.toml"), variants=variants, run_dir=make_run_dir(tmp_path, "late")
    )

    sqlalchemy, peewee = execute(plan).trials

    for trial in (sqlalchemy, peewee):
        assert trial.error is None and "harness: started cold" in (Path(trial.server_dir) / "server.log").read_text()
        assert [r.outcome for r in trial.records] == ["ok"] * 3, trial.records
    assert {e.kind for e in sqlalchemy.trace} >= {"database", "checkout", "checkin"}
    requests = {r.request_id for r in peewee.records}
    assert [e.sql for e in peewee.trace if e.kind == "database"] == ["SqliteDatabase"]
    for kind in ("connect", "query", "close"):
        assert {e.request_id for e in peewee.trace if e.kind == kind} == requests, kind
