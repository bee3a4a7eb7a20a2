from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import httpx
import pytest

from harness.errors import SeedError
from harness.runner import DEFAULT_SEED_ATTEMPTS, Recorder, attach_exceptions, read_events, seed_tutorial
from harness.scenario import Seed, load_scenario
from tests.harness.factories import CONNECTION_OPENED, record


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
