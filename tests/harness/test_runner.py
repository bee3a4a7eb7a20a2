from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import httpx
import pytest

from harness.errors import ExitCode, SeedError
from harness.results import read_results
from harness.runner import (
    DEFAULT_SEED_ATTEMPTS,
    SEED_BODY_LIMIT,
    Recorder,
    attach_exceptions,
    read_events,
    seed_tutorial,
)
from harness.scenario import Seed, load_scenario
from tests.harness.factories import CONNECTION_OPENED, record
from tests.harness.runs import REPO


def test_recorder_keeps_unfinished_requests_as_interrupted_and_orders_seed_first() -> None:
    recorder = Recorder(variant="patched", trial=2)
    seed_id = recorder.begin(phase="seed", index=0, method="POST", path="/users/", planned_offset=None)
    recorder.finish(seed_id, status=200, outcome="ok")
    recorder.start_schedule()
    first = recorder.begin(phase="schedule", index=1, method="GET", path="/slowusers/", planned_offset=0.1)
    recorder.begin(phase="schedule", index=0, method="GET", path="/slowusers/", planned_offset=0.0)
    recorder.finish(first, status=500, outcome="server-error")

    seed, pending, done = recorder.records()
    assert (seed.phase, pending.index, done.index) == ("seed", 0, 1)
    assert seed.request_id == "patched-t2-seed-0"
    assert seed.sent_at < 0 and seed.completed_at is not None and seed.completed_at <= 0
    assert (pending.outcome, pending.completed_at, pending.status) == ("interrupted", None, None)
    assert done.completed_at is not None and done.completed_at >= done.sent_at >= 0


def test_exceptions_join_their_request_and_strays_are_kept() -> None:
    records = [record("unpatched", 1, 0), record("unpatched", 1, 1)]
    hit = replace(CONNECTION_OPENED, request_id=records[1].request_id)
    stray = replace(CONNECTION_OPENED, request_id="elsewhere")

    joined, unmatched = attach_exceptions(records, [hit, stray])

    assert [r.exceptions for r in joined] == [(), (hit,)]
    assert unmatched == [stray]


def test_read_events_skips_a_line_cut_short_by_a_killed_server(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(asdict(CONNECTION_OPENED)) + "\n" + '{"request_id": "unpat')
    assert read_events(path) == [CONNECTION_OPENED]
    assert read_events(tmp_path / "absent.jsonl") == []


@pytest.mark.anyio
async def test_seeding_retries_a_500_and_recovers_a_user_created_by_the_failed_attempt() -> None:
    # The unpatched build can 500 after saving a user; the retry then gets a 400.
    calls: list[tuple[str, str]] = []
    users: list[dict[str, object]] = []

    def app(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path))
        if request.method == "POST" and request.url.path == "/users/":
            body = json.loads(request.content)
            if any(u["email"] == body["email"] for u in users):
                return httpx.Response(400, json={"detail": "Email already registered"})
            users.append({"id": len(users) + 1, "email": body["email"]})
            return httpx.Response(500, text="Internal Server Error")
        if request.url.path == "/users/":
            return httpx.Response(200, json=users)
        return httpx.Response(200, json={})

    recorder = Recorder(variant="unpatched", trial=1)
    scenario = replace(load_scenario("burst"), seed=Seed(users=1, items_per_user=1))
    async with httpx.AsyncClient(transport=httpx.MockTransport(app), base_url="http://test") as client:
        await seed_tutorial(client, scenario.seed, recorder)

    assert calls == [("POST", "/users/"), ("POST", "/users/"), ("GET", "/users/"), ("POST", "/users/1/items/")]
    assert [r.outcome for r in recorder.records()] == ["server-error", "client-error", "ok", "ok"]


@pytest.mark.anyio
async def test_seeding_gives_up_with_a_seed_error_after_its_attempts() -> None:
    recorder = Recorder(variant="unpatched", trial=1)
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(SeedError, match=f"did not succeed in {DEFAULT_SEED_ATTEMPTS} attempts"):
            await seed_tutorial(client, Seed(users=1, items_per_user=0), recorder)
    assert len(recorder.records()) == DEFAULT_SEED_ATTEMPTS


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[" + b" " * SEED_BODY_LIMIT + b"]", "POST /users/ answered more than 1 MiB"),  # not read past the limit
        (b"<html>oops</html>", "POST /users/ did not answer a JSON dict"),
        (b"[" * 100_000, "POST /users/ did not answer a JSON dict"),  # deeper than Python's parser goes
        (b'{"email": "user0@example.com"}', "POST /users/ created user0@example.com but answered no id"),
    ],
)
async def test_the_tutorials_seeding_reads_a_bounded_json_answer_or_fails_with_a_seed_error(
    body: bytes, problem: str
) -> None:
    recorder = Recorder(variant="patched", trial=1)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(SeedError, match=f"seeding failed: {problem}"):
            await seed_tutorial(client, Seed(users=1, items_per_user=0), recorder)
    assert [r.status for r in recorder.records()] == [200]


# The harness's own process runs the CLI and reports its peak memory; the servers are other processes.
_PEAK_MEMORY = """
import resource, sys
from harness.cli import main
code = main(sys.argv[1:])
print(f"PEAK_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.e2e
def test_response_bodies_are_drained_not_kept(tmp_path: Path) -> None:
    # Ten answers of faulty_apps.HUGE_BODY_MB (100 MB) at once: held, they took the harness to 2.2 GB.
    (tmp_path / "harness.toml").write_text(
        f'[variants.huge]\napp = "tests.harness.faulty_apps:huge_bodies"\napp_dir = "{REPO}"\nexpect = "clean"\n'
    )
    (tmp_path / "ten.toml").write_text(
        'trials = 1\nrequest_timeout = 300\n[schedule]\nkind = "burst"\nrequests = 10\npath = "/"\n'
    )

    completed = subprocess.run(
        [sys.executable, "-c", _PEAK_MEMORY, "run", "--scenario", "ten.toml", "--no-trace"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )

    assert completed.returncode == ExitCode.OK, completed.stdout + completed.stderr
    [results] = tmp_path.glob("harness-out/*/results.json")
    [trial] = read_results(results).trials
    assert [(r.status, r.outcome) for r in trial.records] == [(200, "ok")] * 10
    peak_mb = int(completed.stderr.rsplit("PEAK_KB ", 1)[1].split()[0]) / 1024
    assert peak_mb < 400, f"the harness peaked at {peak_mb:.0f} MB"  # 47 MB here; 2,185 MB when bodies were kept
