"""Explore mode in real uvicorn servers of the tutorial's builds: schedules of concurrent /slowusers/ requests."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from harness.files import read_json_lines
from harness.launcher import Server
from harness.runner import Recorder, seed_tutorial
from harness.scenario import Seed
from harness.server.explorer import BEGIN_PATH, END_PATH, QUIESCENCE_BOUND
from harness.server.probe import REQUEST_ID_HEADER
from harness.variant import Variant
from tests.conftest import StartServer
from tests.harness import runs

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

END_TIMEOUT = 60.0  # seconds an end waits for its schedule: a bound for a loaded machine, not a guess
_ids = itertools.count()


async def explore_server(start_server: StartServer, variant: str, *, time_scale: float = 0.05) -> Server:
    """A server of ``variant`` in explore mode, seeded as the runner seeds the tutorial: 2 users, 2 items each."""
    server = await start_server(variant, time_scale=time_scale, explore=True)
    async with client(server) as seeding:
        await seed_tutorial(seeding, Seed(users=2, items_per_user=2), Recorder(variant=variant, trial=1))
    return server


def client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=END_TIMEOUT + 30)


async def schedule(
    server: Server, chooser: dict[str, Any], *, requests: int = 2, timeout: float = END_TIMEOUT
) -> tuple[list[int], dict[str, Any]]:
    """Arm a schedule, send its GET /slowusers/ requests at once, each on its own connection: statuses and record."""
    ids = [f"explored-{next(_ids)}" for _ in range(requests)]
    async with client(server) as control:
        begun = await control.post(BEGIN_PATH, json={"requests": ids, "chooser": chooser})
        assert begun.status_code == 200 and begun.json() == {"armed": True}, begun.text
    statuses = [0] * requests

    async def send(index: int) -> None:
        async with client(server) as own:
            statuses[index] = (await own.get("/slowusers/", headers={REQUEST_ID_HEADER: ids[index]})).status_code

    async with anyio.create_task_group() as group, client(server) as control:
        for index in range(requests):
            group.start_soon(send, index)
        ended = await control.post(END_PATH, json={"timeout": timeout})
    assert ended.status_code == 200, ended.text
    return statuses, ended.json()


def choices(record: dict[str, Any]) -> list[int]:
    return [decision["chosen"] for decision in record["choices"]]


def preempting_after_the_first_step(default: dict[str, Any]) -> list[int]:
    """The default schedule's choices with one deviation: at the first run decision where the request that just ran
    could go on (the second run decision; the first picks who starts), the other request runs instead."""
    chosen = choices(default)
    runs = [number for number, decision in enumerate(default["choices"]) if decision["kind"] == "run"]
    chosen[runs[1]] = 1
    return chosen


def without_clock(record: dict[str, Any]) -> dict[str, Any]:
    """The record but its virtual seconds: /slowusers/ sleeps a second less at each call, a countdown per process."""
    return {key: value for key, value in record.items() if key != "virtual_seconds"}


def server_threads(server: Server) -> int:
    return len(list(Path(f"/proc/{server.pid}/task").iterdir()))


async def test_the_default_chooser_makes_anyios_choices_and_unpatched_passes(start_server: StartServer) -> None:
    server = await explore_server(start_server, "unpatched")
    statuses, record = await schedule(server, {"kind": "default"})
    assert statuses == [200, 200]
    assert record["complete"] and record["divergences"] == 0 and record["stalls"] == 0
    assert set(choices(record)) == {0}  # no deviation: no preemption, always the most recently idle worker
    assert record["workers"] == 1
    calls = [
        "dependency enter (get_db)",
        "endpoint (read_slow_users)",
        "response validation",
        "dependency exit (get_db)",
    ]
    assert [(step["request"], step["call"]) for step in record["steps"]] == [(0, call) for call in calls] + [
        (1, call) for call in calls
    ]
    assert record["requests"] == [{"index": index, "status": 200, "failed_step": None} for index in (0, 1)]
    # The tracer still times each call as a phase, on the dispatcher's worker, for the schedule's requests.
    trace = read_json_lines(Path(server.trace_path or ""))  # the server's, still running
    phases = [event for event in trace if event["kind"] == "phase" and event["request_id"].startswith("explored-")]
    assert [event["phase"] for event in phases] == calls * 2
    assert len({event["thread"] for event in phases}) == 1 and phases[0]["thread"] != 0


@pytest.mark.parametrize(
    ("variant", "expected"), [("unpatched", [200, 500]), ("patched", [200, 200]), ("recommended", [200, 200])]
)
async def test_one_preemption_onto_the_worker_holding_a_connection_fails_the_unpatched_build_only(
    start_server: StartServer, variant: str, expected: list[int]
) -> None:
    server = await explore_server(start_server, variant)
    _, default = await schedule(server, {"kind": "default"})
    statuses, record = await schedule(server, {"kind": "replay", "choices": preempting_after_the_first_step(default)})
    assert statuses == expected
    assert record["complete"] and record["divergences"] == 0
    second = record["steps"][1]
    assert second["request"] == 1 and second["preempted"] and second["worker"] == record["steps"][0]["worker"]
    if variant == "unpatched":
        assert second["call"] == "dependency enter (get_db)"
        assert second["error"] == "OperationalError: Connection already opened."
        assert record["requests"][1] == {"index": 1, "status": 500, "failed_step": 2}
        assert [step["error"] for step in record["steps"] if step is not second] == [None] * (len(record["steps"]) - 1)
    else:
        assert all(step["error"] is None for step in record["steps"])


async def test_a_replayed_schedule_gives_the_same_record_every_time_and_in_a_fresh_server(
    start_server: StartServer,
) -> None:
    server = await explore_server(start_server, "unpatched")
    _, default = await schedule(server, {"kind": "default"})
    failing = {"kind": "replay", "choices": preempting_after_the_first_step(default)}
    records = [(await schedule(server, failing))[1] for _ in range(20)]
    assert all(without_clock(record) == without_clock(records[0]) for record in records)
    assert records[0]["requests"][1]["failed_step"] == 2
    fresh = await explore_server(start_server, "unpatched")
    await schedule(fresh, {"kind": "default"})  # as in the first server: the countdown of its sleeps matches
    assert (await schedule(fresh, failing))[1] == records[0]


async def test_every_worker_thread_ends_with_its_schedule_and_a_connection_left_on_one_is_gone(
    start_server: StartServer,
) -> None:
    server = await explore_server(start_server, "unpatched")
    threads = server_threads(server)
    # The first request's endpoint on a new worker: its exit there finds no connection to close, and the one its
    # enter opened stays in the first worker's thread-local state.
    statuses, leaking = await schedule(server, {"kind": "replay", "choices": [0, 0, 1]})
    assert statuses == [200, 200] and leaking["workers"] == 2
    assert [step["worker"] for step in leaking["steps"][:4]] == [1, 2, 2, 2]
    assert server_threads(server) == threads
    # Had the first worker lived on, the next schedule's first enter would land on it and fail.
    statuses, after = await schedule(server, {"kind": "default"})
    assert statuses == [200, 200] and all(step["error"] is None for step in after["steps"])
    assert server_threads(server) == threads


@pytest.mark.parametrize(("variant", "failing"), [("unpatched", True), ("patched", False)])
async def test_pct_of_depth_2_over_20_seeds_finds_the_unpatched_build_failing_and_not_the_patched_one(
    start_server: StartServer, variant: str, failing: bool
) -> None:
    server = await explore_server(start_server, variant)
    _, default = await schedule(server, {"kind": "default"})
    steps = len(default["steps"])
    failed = 0
    for seed in range(1, 21):
        statuses, _ = await schedule(server, {"kind": "pct", "seed": seed, "depth": 2, "steps": steps})
        failed += statuses != [200, 200]
    print(f"{variant}: pct depth 2 over {steps} steps, seeds 1-20: {failed} of 20 schedules failed")
    assert (failed > 0) is failing


async def test_the_apps_sleeps_are_virtual_while_a_schedule_is_armed(start_server: StartServer) -> None:
    server = await explore_server(start_server, "unpatched", time_scale=1)  # /slowusers/ sleeps 9 s, then 8 s
    started = time.perf_counter()
    statuses, record = await schedule(server, {"kind": "default"})
    elapsed = time.perf_counter() - started
    assert statuses == [200, 200]
    assert record["virtual_seconds"] == 17.0
    assert elapsed < 8.0, f"the schedule took {elapsed:.2f} s: a real sleep"  # one real sleep alone is 8 s or more


async def test_bad_control_requests_are_refused_with_one_line_and_a_lost_request_cannot_hang_the_server(
    start_server: StartServer,
) -> None:
    server = await explore_server(start_server, "unpatched")
    async with client(server) as control:
        assert (await control.post(END_PATH, json={"timeout": 1})).json() == {"error": "no schedule is armed"}
        for body, reason in [
            (b"{", "begin: the body is not JSON"),
            (b'{"requests": [], "chooser": {"kind": "default"}}', "begin: requests must be a non-empty list"),
            (b'{"requests": ["a", "a"], "chooser": {"kind": "default"}}', "begin: the request ids must be distinct"),
            (b'{"requests": ["a"], "chooser": {"kind": "dfs"}}', "chooser: unknown kind 'dfs'"),
            (b'{"requests": ["a"], "chooser": {"kind": "pct", "seed": 1, "depth": 9, "steps": 2}}', "depth must be"),
        ]:
            refused = await control.post(BEGIN_PATH, content=body)
            assert refused.status_code == 400 and reason in refused.json()["error"], refused.text
        assert (await control.get(BEGIN_PATH)).status_code == 405
        assert (await control.post(BEGIN_PATH, content=b" " * (2 << 20))).status_code == 413
        ids = ["lost-0", "lost-1"]
        assert (await control.post(BEGIN_PATH, json={"requests": ids, "chooser": {"kind": "default"}})).is_success
        assert (
            await control.post(BEGIN_PATH, json={"requests": ids, "chooser": {"kind": "default"}})
        ).status_code == 409
        assert (await control.post(END_PATH, json={"timeout": -1})).status_code == 400
        assert (await control.get("/users/")).status_code == 200  # a request not armed passes through at once

        # Only one of the two armed requests comes: it waits for the other until the end's timeout, then fails.
        async def lost() -> None:
            answer = await control.get("/slowusers/", headers={REQUEST_ID_HEADER: ids[0]})
            assert answer.status_code == 500

        async with anyio.create_task_group() as group:
            group.start_soon(lost)
            ended = await control.post(END_PATH, json={"timeout": 0.5})
        assert ended.status_code == 200 and ended.json()["complete"] is False
        assert ended.json()["requests"][1] == {"index": 1, "status": None, "failed_step": None}
    statuses, _ = await schedule(server, {"kind": "default"})
    assert statuses == [200, 200]


async def test_a_call_that_raises_stopiteration_fails_its_request_and_the_schedule_still_ends(tmp_path: Path) -> None:
    variant = Variant(
        name="explored",
        app="tests.harness.server.explored_app:app",
        description="",
        expect="fails",
        app_dir=str(runs.REPO),
    )
    server = Server(variant, tmp_path / "explored", time_scale=1, explore=True)
    try:
        await server.wait_ready()
        async with client(server) as control:
            begun = await control.post(BEGIN_PATH, json={"requests": ["stop"], "chooser": {"kind": "default"}})
            assert begun.status_code == 200
            async with client(server) as own:  # uvicorn closes a connection after a 500
                assert (await own.get("/stop", headers={REQUEST_ID_HEADER: "stop"})).status_code == 500
            ended = (await control.post(END_PATH, json={"timeout": END_TIMEOUT})).json()
        assert ended["complete"] and ended["steps"][0]["error"] == "StopIteration: "
        assert ended["requests"] == [{"index": 0, "status": 500, "failed_step": 1}]
    finally:
        server.stop()


def test_explore_mode_refuses_a_starlette_that_does_not_use_anyios_thread_pool(tmp_path: Path) -> None:
    legacy = tmp_path / "starlette"
    legacy.mkdir()
    (legacy / "__init__.py").write_text('__version__ = "0.14.2"\n')
    (legacy / "concurrency.py").write_text("import asyncio\n")  # 0.14: run_in_executor, no anyio
    installed = subprocess.run(
        [sys.executable, "-c", "from harness.server.explorer import Explorer; Explorer().install()"],
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 1
    assert installed.stderr.splitlines()[-1] == (
        "harness.server.explorer.CannotExplore: explore mode needs Starlette 0.15 or later, whose thread pool is "
        "anyio's; this app runs Starlette 0.14.2"
    )


# -- SQLAlchemy's hooks as scheduling points inside a call -------------------------------------

ENDPOINT = "endpoint (create_item)"
DETACHED = "DetachedInstanceError: Instance <Item at 0x...> is not bound to a Session; attribute refresh"


@pytest.fixture
def sqlalchemy_server(tmp_path: Path) -> Iterator[Callable[..., Awaitable[Server]]]:
    """Start explore-mode servers of the apps in :mod:`tests.harness.server.explored_sqlalchemy_app`; all stopped."""
    servers: list[Server] = []

    async def start(build: str, *, trace: bool = True) -> Server:
        variant = Variant(
            name=build.replace("_", "-"),
            app=f"tests.harness.server.explored_sqlalchemy_app:{build}",
            factory=True,
            app_dir=str(runs.REPO),
            env={"DATABASE_URL": "{database_url}"},
        )
        server = Server(variant, tmp_path / f"{build}-{len(servers)}", time_scale=1, trace=trace, explore=True)
        servers.append(server)
        await server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


async def post_items(
    server: Server, chooser: dict[str, Any], *, send: int = 2, arm: int = 2, timeout: float = END_TIMEOUT
) -> tuple[list[int], dict[str, Any]]:
    """Arm ``arm`` requests, send the first ``send`` of them at once (POST /items, each on its own connection)."""
    ids = [f"items-{next(_ids)}" for _ in range(arm)]
    statuses = [0] * send

    async def post(index: int) -> None:
        async with client(server) as own:
            answer = await own.post("/items", json={"name": f"item {index}"}, headers={REQUEST_ID_HEADER: ids[index]})
            statuses[index] = answer.status_code

    async with client(server) as control:
        begun = await control.post(BEGIN_PATH, json={"requests": ids, "chooser": chooser})
        assert begun.status_code == 200, begun.text
        async with anyio.create_task_group() as group:
            for index in range(send):
                group.start_soon(post, index)
            ended = await control.post(END_PATH, json={"timeout": timeout})
    assert ended.status_code == 200, ended.text
    return statuses, ended.json()


def one_deviation_each(default: dict[str, Any]) -> Iterator[list[int]]:
    """Every schedule with one deviation from ``default``'s choices: at each decision point, each other option."""
    for point, decision in enumerate(default["choices"]):
        for option in range(1, decision["options"]):
            yield [0] * point + [option]


@pytest.mark.parametrize("trace", [True, False], ids=["traced", "no-trace"])
async def test_anyios_own_order_runs_each_call_through_its_scheduling_points_on_one_worker(
    sqlalchemy_server: Callable[..., Awaitable[Server]], trace: bool
) -> None:
    """With the trace off too: SQLAlchemy is hooked for its scheduling points, its events written nowhere."""
    server = await sqlalchemy_server("shared", trace=trace)
    statuses, record = await post_items(server, {"kind": "default"})
    assert statuses == [200, 200] and record["complete"] and record["blocked"] == record["stalls"] == 0
    assert set(choices(record)) == {0} and record["workers"] == 1
    points = [(step["request"], step["call"], step["point"]) for step in record["steps"]]
    endpoint = [(request, call, point) for request, call, point in points if call == ENDPOINT]
    # Each request's endpoint: its start, then a step from each point it paused at, SQLAlchemy's own checkouts
    # and checkins among its session's calls; then its response validation, a call without one.
    assert [point for request, _, point in endpoint if request == 0] == [
        point for request, _, point in endpoint if request == 1
    ]
    assert [point for request, _, point in endpoint if request == 0][:4] == ["call", "flush", "checkout", "commit"]
    assert {"close", "checkin", "execute"} <= {point for _, _, point in endpoint}
    assert [request for request, _, _ in points] == sorted(request for request, _, _ in points)  # A, then B


async def test_another_requests_close_between_one_calls_flush_and_commit_fails_the_shared_session_only(
    sqlalchemy_server: Callable[..., Awaitable[Server]],
) -> None:
    """Every schedule one deviation from anyio's order: the shared session fails in some, always at a step that
    resumed its endpoint from a point; a session per request in none, though two of them then wait on SQLite's
    write lock, which one takes at its flush and keeps until its commit."""
    outcomes: dict[str, list[tuple[list[int], dict[str, Any]]]] = {}
    for build in ("shared", "per_request"):
        server = await sqlalchemy_server(build)
        _, default = await post_items(server, {"kind": "default"})
        outcomes[build] = []
        for chosen in one_deviation_each(default):
            outcomes[build].append(await post_items(server, {"kind": "replay", "choices": chosen}))
    failed = [record for statuses, record in outcomes["shared"] if 500 in statuses]
    detached = []
    for record in failed:
        [step] = [step for step in record["steps"] if step["error"]]
        assert step["call"] == ENDPOINT and step["point"] != "call", step
        own = [s for s in record["steps"] if s["request"] == step["request"] and s["index"] < step["index"]]
        assert own[-1]["call"] == ENDPOINT, "the failure is inside the call that paused, not in a later one"
        if step["error"].startswith(DETACHED):
            detached.append(record)
            closed = [s for s in record["steps"] if s["request"] != step["request"] and s["point"] == "close"]
            assert closed and own[0]["index"] < closed[0]["index"] < step["index"], "the other's close() came between"
    assert detached, f"no schedule with one deviation met the detached item, of {len(failed)} that failed"
    assert all(statuses == [200, 200] for statuses, _ in outcomes["per_request"])
    assert all(record["complete"] and record["stalls"] == 0 for _, record in outcomes["per_request"])
    assert any(record["blocked"] for _, record in outcomes["per_request"]), "no schedule met SQLite's write lock"


async def test_a_replayed_schedule_with_paused_calls_gives_the_same_record_in_a_fresh_server(
    sqlalchemy_server: Callable[..., Awaitable[Server]],
) -> None:
    server = await sqlalchemy_server("shared")
    _, default = await post_items(server, {"kind": "default"})
    for failing in one_deviation_each(default):
        statuses, record = await post_items(server, {"kind": "replay", "choices": failing})
        if 500 in statuses:
            break
    else:
        raise AssertionError("no schedule with one deviation failed")
    records = [record] + [(await post_items(server, {"kind": "replay", "choices": failing}))[1] for _ in range(4)]
    fresh = await sqlalchemy_server("shared")
    records.append((await post_items(fresh, {"kind": "replay", "choices": failing}))[1])
    assert all(each == records[0] for each in records)  # the addresses in the error's text masked


async def test_a_call_paused_when_its_schedule_ends_is_resumed_to_its_end_and_its_worker_ended(
    sqlalchemy_server: Callable[..., Awaitable[Server]],
) -> None:
    """Armed with a request that never comes, the dispatcher waits QUIESCENCE_BOUND (5 s) for it before each step:
    the first step takes A to its first point, and the end (7.5 s) comes in the wait after it, A paused."""
    server = await sqlalchemy_server("shared")
    async with client(server) as warm:  # anyio's own worker, which the call's response validation gets once disarmed
        assert (await warm.post("/items", json={"name": "unarmed"})).status_code == 200
    threads = server_threads(server)
    statuses, record = await post_items(server, {"kind": "default"}, send=1, timeout=QUIESCENCE_BOUND * 1.5)
    assert [(step["request"], step["point"]) for step in record["steps"]] == [(0, "call")]  # then paused at flush
    assert record["stalls"] == 1 and not record["complete"]
    assert statuses == [200]  # resumed at the end, it ran to its end
    assert server_threads(server) == threads
    assert (await post_items(server, {"kind": "default"}))[0] == [200, 200]
