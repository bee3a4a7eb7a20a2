from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from urllib.parse import quote, urlsplit

import anyio
import pytest

from harness.config import builtin_config
from harness.errors import AppError, ExitCode, LaunchError, UsageError
from harness.launcher import DEFAULT_STOP_TIMEOUT, LOG_TAIL_BYTES, Server, ServerState, check_host, log_tail
from harness.postgres import PostgresServer
from harness.variant import Variant
from tests.conftest import StartServer, is_running
from tests.harness import faulty_apps, runs


@pytest.mark.anyio
@pytest.mark.e2e
async def test_a_server_binds_loopback_on_its_own_port_and_stops(start_server: StartServer) -> None:
    first = await start_server("unpatched")
    second = await start_server("patched")
    assert first.base_url.startswith("http://127.0.0.1:")
    assert first.port != second.port
    assert "Uvicorn running on http://127.0.0.1:" in first.log_tail()
    assert first.stop_timeout == DEFAULT_STOP_TIMEOUT  # ready: its requests get that long to finish
    first.stop()
    first.stop()  # stopping twice is harmless
    assert first.state is ServerState.STOPPED
    assert not is_running(first.pid)


@pytest.mark.anyio
@pytest.mark.e2e
async def test_a_variant_that_cannot_import_fails_with_its_name_and_the_import_error(tmp_path: Path) -> None:
    broken = Variant(name="broken", app="harness.app_variants.no_such_module:app", description="", expect="fails")
    server = Server(broken, tmp_path / "broken", time_scale=1.0)
    with pytest.raises(AppError) as caught:
        await server.wait_ready(timeout=30)
    assert caught.value.message == (
        "variant 'broken': app 'harness.app_variants.no_such_module:app' did not load: "
        "ModuleNotFoundError: No module named 'harness.app_variants.no_such_module'"
    )
    assert not is_running(server.pid)


@pytest.mark.anyio
@pytest.mark.e2e
async def test_a_server_that_never_gets_ready_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    server = Server(
        Variant(name="patched", app="harness.app_variants.patched:app", description="", expect="clean"),
        tmp_path / "slow",
        time_scale=1.0,
    )
    with pytest.raises(LaunchError, match=r"did not start within 0\.01 s"):
        await server.wait_ready(timeout=0.01)
    assert not is_running(server.pid)


@pytest.mark.anyio
@pytest.mark.e2e
async def test_the_reported_port_is_the_one_the_server_itself_bound(start_server: StartServer) -> None:
    # uvicorn binds port 0 and the kernel picks the port in that same call: there is no
    # moment between choosing a port and binding it for another process to take it. What
    # could still go wrong is reading another server's port; four started at once, each
    # must report a port that its own process listens on.
    servers: list[Server] = []

    async def start(variant: str) -> None:
        servers.append(await start_server(variant))

    async with anyio.create_task_group() as tg:
        for variant in ("unpatched", "patched", "unpatched", "patched"):
            tg.start_soon(start, variant)
    for server in servers:
        assert server.port is not None and _listening_ports(server.pid) == {server.port}
    assert len({server.port for server in servers}) == 4


@pytest.mark.anyio
@pytest.mark.e2e
async def test_a_server_that_cannot_bind_is_a_launch_failure_with_uvicorn_s_reason(tmp_path: Path) -> None:
    # With port 0 a bind can only fail for the address: 192.0.2.1 (TEST-NET-1) is on no machine.
    server = Server(builtin_config().variants["patched"], tmp_path / "unbindable", time_scale=1.0, host="192.0.2.1")
    with pytest.raises(LaunchError) as caught:
        await server.wait_ready()
    assert "variant 'patched' exited with code 3 before it was ready" in caught.value.message
    assert "error while attempting to bind on address ('192.0.2.1', 0)" in caught.value.log_tail
    assert not is_running(server.pid)


@pytest.mark.anyio
@pytest.mark.e2e
async def test_a_loopback_address_other_than_127_0_0_1_is_allowed(tmp_path: Path) -> None:
    server = Server(builtin_config().variants["patched"], tmp_path / "other-loopback", time_scale=1.0, host="127.0.0.2")
    try:
        await server.wait_ready()
        assert server.base_url.startswith("http://127.0.0.2:")
        assert _listening_ports(server.pid) == {server.port}
    finally:
        server.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "8.8.8.8"])
def test_an_address_others_can_reach_is_refused_unless_allowed(host: str) -> None:
    with pytest.raises(UsageError, match="--allow-non-loopback"):
        check_host(host, allow_non_loopback=False)
    assert check_host(host, allow_non_loopback=True) == host


@pytest.mark.parametrize(("host", "expected"), [("127.0.0.1", "127.0.0.1"), ("127.1.2.3", "127.1.2.3"), ("::1", "::1")])
def test_loopback_addresses_need_no_permission(host: str, expected: str) -> None:
    assert check_host(host, allow_non_loopback=False) == expected


def test_a_host_name_is_refused_because_it_might_not_resolve_to_loopback() -> None:
    with pytest.raises(UsageError, match="expected an IP address, got 'localhost'"):
        check_host("localhost", allow_non_loopback=False)


def test_a_log_tail_reads_only_the_end_of_the_log_and_says_where_it_cut_a_50_mb_line(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_bytes(b"INFO: started\n" + b"y" * 50_000_000 + b"\nERROR: Application startup failed. Exiting.\n")

    tail = log_tail(log)

    first, last = tail.split("\n")
    assert first.startswith("[cut: the log's first 49,991,867 bytes not shown] ...yyyy")
    assert last == "ERROR: Application startup failed. Exiting."
    assert len(tail) < LOG_TAIL_BYTES + 100
    log.write_bytes(b"one\ntwo\n")
    assert log_tail(log) == "one\ntwo" and log_tail(log, lines=1) == "two"  # short logs: whole lines, no mark


def spawning_variant(attribute: str, start: str) -> Variant:
    """The build of ``tests/harness/spawning_app.py`` named ``attribute``, forked warm or started ``cold``."""
    return Variant(
        name=attribute,
        app=f"tests.harness.spawning_app:{attribute}",
        description="starts processes of its own at import",
        expect="clean",
        app_dir=str(runs.REPO),
        # PYTHONPATH is read only as a process starts: a server whose env sets it is started cold
        env={"SPAWNING_PIDS": "{tmp}/children", **({"PYTHONPATH": str(runs.REPO)} if start == "cold" else {})},
    )


async def started_with_children(variant: Variant, directory: Path) -> tuple[Server, list[int]]:
    server = Server(variant, directory, time_scale=1.0)
    await server.wait_ready()
    assert ("harness: started cold" in server.log_tail()) == ("PYTHONPATH" in variant.env)
    children = [int(pid) for pid in (server.tmp_dir / "children").read_text().split()]
    assert len(children) == 3 and all(is_running(pid) for pid in children)
    return server, children


@pytest.mark.anyio
@pytest.mark.e2e
@pytest.mark.parametrize("start", ["warm", "cold"])
async def test_what_an_app_starts_ends_with_its_server_even_a_child_that_ignores_sigterm(
    tmp_path: Path, start: str
) -> None:
    server, children = await started_with_children(spawning_variant("app", start), tmp_path / "spawning")
    assert os.getpgid(server.pid) == server.pid  # the server leads its own group: signals to it reach its children
    server.stop()
    assert server.process.poll() in (0, -signal.SIGTERM)  # gracefully (uvicorn re-raises the signal), not killed
    runs.wait_gone(children, 5)


@pytest.mark.anyio
@pytest.mark.e2e
@pytest.mark.parametrize("start", ["warm", "cold"])
async def test_what_an_app_starts_ends_when_its_server_is_killed_after_the_stop_timeout(
    tmp_path: Path, start: str
) -> None:
    server, children = await started_with_children(spawning_variant("stubborn", start), tmp_path / "stubborn")
    server.stop(timeout=0.5)
    assert server.process.poll() == -signal.SIGKILL
    runs.wait_gone(children, 5)


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports on which the process ``pid`` has a listening socket, from /proc."""
    sockets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                sockets.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in sockets:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.e2e
def test_a_server_that_never_listened_is_killed_at_once_a_listening_one_gets_the_stop_timeout(tmp_path: Path) -> None:
    # uvicorn ignores SIGTERM while its app starts up, and such a server has no request to let finish.
    server = Server(faulty_apps.variant("never_ready"), tmp_path / "never", time_scale=1.0)
    assert server.stop_timeout == 0.0
    server.stop()
    assert server.state is ServerState.STOPPED and not is_running(server.pid)


# An app that takes its database in parts, as many do (DB_HOST, DB_PORT, ...), and answers 500 unless it
# connects with them to the database the harness made for its server.
PARTS_APP = """
import os, sqlite3
from pathlib import Path
from fastapi import FastAPI, HTTPException

app = FastAPI()
PARTS = [os.environ[name] for name in ("DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD")]


@app.get("/check")
def check() -> dict[str, str]:
    host, port, name, user, password = PARTS
    if not host:  # SQLite: a file in the server's {tmp}, nothing else
        ok = not port and not user and not password and Path(name).is_absolute() and name.endswith("app.sqlite3")
        sqlite3.connect(name).execute("CREATE TABLE IF NOT EXISTS seen (x)")
        if not (ok and Path(name).is_file()):
            raise HTTPException(500, f"not a SQLite file: {PARTS}")
        return {"database": name}
    import psycopg2

    connection = psycopg2.connect(host=host, port=int(port), dbname=name, user=user, password=password)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database(), current_user")
            if cursor.fetchone() != (name, user) or not name.startswith("harness_"):
                raise HTTPException(500, f"connected elsewhere: {PARTS}")
    finally:
        connection.close()
    return {"database": name}
"""
PARTS_CONFIG = """
[variants.parts]
app = "parts_app:app"
env = { DB_HOST = "{database_host}", DB_PORT = "{database_port}", DB_NAME = "{database_name}", \
DB_USER = "{database_user}", DB_PASSWORD = "{database_password}" }
"""
PARTS_SCENARIO = """
trials = 1
[schedule]
kind = "burst"
requests = 3
path = "/check"
"""
# Characters a URL must percent-encode in a password: the app gets it decoded.
AWKWARD_PASSWORD = "p@ss:w/rd%25 #?"


@pytest.mark.e2e
@pytest.mark.parametrize("database", ["sqlite", "postgres", "the user's postgres"])
def test_an_app_gets_the_parts_of_its_database_url_and_connects_with_them(tmp_path: Path, database: str) -> None:
    (tmp_path / "parts_app.py").write_text(PARTS_APP)
    (tmp_path / "harness.toml").write_text(PARTS_CONFIG)
    (tmp_path / "check.toml").write_text(PARTS_SCENARIO)
    options = ["--config", tmp_path / "harness.toml", "--scenario", tmp_path / "check.toml", "--out", tmp_path / "out"]
    with contextlib.ExitStack() as stack:
        if database != "sqlite":
            options += ["--database", "postgres"]
        if database == "the user's postgres":
            server = stack.enter_context(PostgresServer.start(password=AWKWARD_PASSWORD))
            netloc = f"postgres:{quote(AWKWARD_PASSWORD, safe='')}@{urlsplit(server.display_url).netloc.split('@')[1]}"
            options += ["--database-url", f"postgresql://{netloc}/postgres"]
        completed = runs.harness("run", *options, timeout=180)

    assert completed.returncode == ExitCode.OK, completed.stdout + completed.stderr
    assert "3 " in completed.stdout and " 0 " in completed.stdout  # 3 requests, none 5xx
    assert AWKWARD_PASSWORD not in completed.stdout + completed.stderr
