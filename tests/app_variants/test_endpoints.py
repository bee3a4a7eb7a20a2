"""The app behaves as the tutorial's, in both builds, on real uvicorn servers."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from harness.launcher import Server
from tests.conftest import StartServer

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.mark.parametrize("variant", ["unpatched", "patched"])
async def test_the_tutorials_endpoints(
    variant: str, start_server: StartServer, client_for: Callable[[Server], httpx.AsyncClient]
) -> None:
    server = await start_server(variant)
    client = client_for(server)

    created = await client.post("/users/", json={"email": "a@example.com", "password": "pw"})
    assert created.status_code == 200
    user = created.json()
    assert user == {"email": "a@example.com", "id": user["id"], "is_active": True, "items": []}
    assert "password" not in created.text and "hashed_password" not in created.text

    duplicate = await client.post("/users/", json={"email": "a@example.com", "password": "pw"})
    assert (duplicate.status_code, duplicate.json()) == (400, {"detail": "Email already registered"})

    item = await client.post(f"/users/{user['id']}/items/", json={"title": "t", "description": "d"})
    assert item.json() == {"title": "t", "description": "d", "id": item.json()["id"], "owner_id": user["id"]}

    fetched = await client.get(f"/users/{user['id']}")
    assert [i["title"] for i in fetched.json()["items"]] == ["t"]  # the lazy items query, run in validation
    missing = await client.get("/users/999")
    assert (missing.status_code, missing.json()) == (404, {"detail": "User not found"})
    assert [u["email"] for u in (await client.get("/users/")).json()] == ["a@example.com"]
    assert [i["id"] for i in (await client.get("/items/")).json()] == [item.json()["id"]]


async def test_slowusers_counts_down_from_ten_scaled_by_the_time_scale(
    start_server: StartServer, client_for: Callable[[Server], httpx.AsyncClient]
) -> None:
    scale = 0.1
    client = client_for(await start_server("patched", time_scale=scale))
    durations = []
    for _ in range(3):
        start = time.perf_counter()
        response = await client.get("/slowusers/")
        durations.append(time.perf_counter() - start)
        assert response.status_code == 200
    # The countdown starts at 10 and the first request sleeps one less: 0.9 s, 0.8 s, 0.7 s.
    for duration, expected in zip(durations, (0.9, 0.8, 0.7), strict=True):
        assert expected <= duration < expected + 0.5


async def test_each_server_gets_its_own_fresh_database(
    start_server: StartServer, client_for: Callable[[Server], httpx.AsyncClient]
) -> None:
    first = await start_server("unpatched")
    await client_for(first).post("/users/", json={"email": "a@example.com", "password": "pw"})
    second = await start_server("unpatched")
    assert first.database_path != second.database_path
    assert (await client_for(second).get("/users/")).json() == []
