"""The floor of one harness trial of one build: the same work, no harness code. Prints one line.

Usage: python benchmarks/floor.py [POSTGRES_URL]   (uvicorn serves the unpatched build on 127.0.0.1
port 0; 2 users with 2 items each are seeded, 100 GET /slowusers/ fired at once, a connection each;
the server stopped. With the URL of a PostgreSQL server's maintenance database, the build runs on a
database made fresh there for the trial, from template0, and dropped after it, instead of SQLite)
"""

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


async def send(client, method, path, body=None):  # a 5xx is retried, as the harness does when seeding
    for _ in range(5):
        if (response := await client.request(method, path, json=body)).status_code < 500:
            return response
    raise RuntimeError(f"{method} {path}: HTTP {response.status_code} five times")


async def user_id(client, email):
    response = await send(client, "POST", "/users/", {"email": email, "password": "secret"})
    if response.status_code != 400:
        return response.json()["id"]
    users = (await send(client, "GET", "/users/")).json()  # 400: an attempt that got a 5xx had created it
    return next(user["id"] for user in users if user["email"] == email)


async def trial(url):
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)  # a connection per request
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30, trust_env=False) as client:
        for user in range(2):
            user_id_ = await user_id(client, f"user{user}@example.com")
            for item in range(2):
                await send(client, "POST", f"/users/{user_id_}/items/", {"title": f"item {item}", "description": "-"})
        return await asyncio.gather(*(client.get("/slowusers/") for _ in range(100)), return_exceptions=True)


def postgres(url, statement):
    connection = psycopg2.connect(url)
    connection.autocommit = True  # CREATE and DROP DATABASE run outside a transaction
    connection.cursor().execute(statement)
    connection.close()


start = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    log, env = Path(tmp, "server.log"), {**os.environ, "APP_VARIANTS_TIME_SCALE": "0.05"}
    env["APP_VARIANTS_DATABASE"] = f"{tmp}/app.sqlite3"
    if len(sys.argv) > 1:
        import psycopg2

        name = f"floor_{os.getpid()}"
        postgres(sys.argv[1], f"CREATE DATABASE {name} TEMPLATE template0")
        env["APP_VARIANTS_DATABASE"] = sys.argv[1].rsplit("/", 1)[0] + f"/{name}"
    command = [sys.executable, "-m", "uvicorn", "harness.app_variants.unpatched:app", "--host", "127.0.0.1"]
    with log.open("wb") as out:  # uvicorn's output goes to a file, polled for the port
        server = subprocess.Popen(
            [*command, "--port", "0"], cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        while not (found := re.search(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_bytes())):
            if server.poll() is not None or time.perf_counter() - start > 30:
                sys.exit(f"floor: the server exited with {server.poll()} or was not running within 30 s")
            time.sleep(0.01)
        answers = asyncio.run(asyncio.wait_for(trial(f"http://127.0.0.1:{found[1].decode()}"), 60))
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if len(sys.argv) > 1:
            postgres(sys.argv[1], f"DROP DATABASE {name} WITH (FORCE)")
statuses = [a.status_code for a in answers if isinstance(a, httpx.Response)]
print(
    f"floor: {len(answers)} requests, {sum(s < 300 for s in statuses)} 2xx, {sum(s >= 500 for s in statuses)} 5xx, "
    f"{len(answers) - len(statuses)} transport errors, {time.perf_counter() - start:.2f} s from start to stop"
)
