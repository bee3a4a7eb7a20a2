"""SQLAlchemy apps under real uvicorn servers: each broken build's 5xx explained, naming the requests involved;
each fixed build clean and giving every connection back; an SQLAlchemy the trace cannot hook stops the run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.errors import ExitCode
from harness.files import make_run_dir
from harness.pipeline import execute
from harness.plan import RunPlan
from harness.results import CauseKind
from harness.scenario import load_scenario_file
from harness.variant import Variant
from tests.harness.runs import INSTALLED_HARNESS, REPO

SCENARIO = """\
description = "{requests} requests at once"
trials = 1
request_timeout = 60  # far past the apps' 5 s pool timeout: every request is answered, none times out
fail_on = ["5xx", "transport-error", "timeout"]
{seed}
[schedule]
kind = "burst"
requests = {requests}
[schedule.request]
method = "{method}"
path = "/orders"
{body}
"""
SEED = '[[seed]]\nmethod = "POST"\npath = "/orders"\njson = { n = "{i}" }\nrepeat = 3'


def build(app: str) -> Variant:
    return Variant(
        name=app.replace("_", "-"),
        app=f"tests.harness.sqlalchemy_apps:{app}",
        factory=True,
        app_dir=str(REPO),
        expect="fails" if app.endswith("broken") else "clean",
        env={"DATABASE_URL": "{database_url}"},
    )


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("bug", "causes"),
    [
        # a scoped_session never removed: the next request on the thread gets the last one's session, and the
        # sessions' connections stay checked out until the pool has none left
        ("scoped", {"carried-session", "pool-exhausted"}),
        ("shared", {"shared-session"}),  # one module-level AsyncSession, closed after each request
        ("unclosed", {"pool-exhausted"}),  # an AsyncSession per request, never closed
    ],
)
def test_each_broken_builds_5xx_are_explained_and_its_fixed_build_gives_every_connection_back(
    tmp_path: Path, bug: str, causes: set[CauseKind]
) -> None:
    writes = bug == "scoped"
    scenario_file = tmp_path / "orders.toml"
    scenario_file.write_text(
        SCENARIO.format(
            requests=80,
            seed="" if writes else SEED,
            method="POST" if writes else "GET",
            body='json = { n = "{i}" }' if writes else "",
        )
    )
    scenario = load_scenario_file(scenario_file)
    plan = RunPlan(
        scenario=scenario,
        variants=(build(f"{bug}_broken"), build(f"{bug}_fixed")),
        run_dir=make_run_dir(tmp_path, scenario.name),
    )

    broken, fixed = execute(plan).trials

    assert broken.error is None and fixed.error is None, (broken.error, fixed.error)
    failures = [r for r in broken.records if r.outcome == "server-error"]
    assert failures, f"{bug}_broken failed no request"
    for r in failures:
        assert r.diagnosis is not None and r.diagnosis.kind in causes, r.diagnosis
        assert len(r.diagnosis.requests) >= 2, r.diagnosis.text  # it names who else was involved
        assert "request #" in r.diagnosis.text.split(" ", 2)[2]
    if bug != "shared":
        assert broken.unclosed_connections, "its sessions keep their connections"
    assert broken.pooled == fixed.pooled == (bug != "shared")  # the shared builds run on NullPool
    assert not [r for r in fixed.records if r.outcome == "server-error"]
    assert fixed.unclosed_connections == 0 and fixed.most_checked_out
    assert {r.outcome for r in fixed.records} <= {"ok", "client-error"}  # the scoped builds reject empty orders


@pytest.mark.e2e
def test_an_sqlalchemy_the_trace_cannot_hook_stops_the_run_with_one_line_naming_the_versions(tmp_path: Path) -> None:
    (tmp_path / "sqlalchemy").mkdir()
    (tmp_path / "sqlalchemy" / "__init__.py").write_text('__version__ = "1.3.24"\n')
    (tmp_path / "app.py").write_text("import sqlalchemy\nfrom fastapi import FastAPI\n\napp = FastAPI()\n")
    (tmp_path / "orders.toml").write_text(SCENARIO.format(requests=2, seed="", method="GET", body=""))
    (tmp_path / "harness.toml").write_text('scenario = "orders.toml"\n\n[variants.old]\napp = "app:app"\n')

    done = subprocess.run(
        [str(INSTALLED_HARNESS), "run"], cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=None
    )

    assert done.returncode == ExitCode.USAGE_ERROR, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "harness: error: variant 'old': app 'app:app': the app uses SQLAlchemy 1.3.24, which the trace cannot hook: "
        "it supports SQLAlchemy 1.4 and 2.x (upgrade SQLAlchemy, or run with --no-trace)"
    )
    assert "Traceback" not in done.stderr + done.stdout
