"""Servers forked from the warm parent start fresh, and every process of the chain ends with the harness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.forkserver import LOST_EXIT_CODE, ForkServer, WarmStartError, warm_parent
from harness.launcher import Server
from harness.variant import Variant
from tests.conftest import is_running
from tests.harness import runs


def fresh_variant(**env: str) -> Variant:
    return Variant(
        name="fresh",
        app="tests.harness.fresh_app:app",
        description="reports what its process holds",
        expect="clean",
        app_dir=str(runs.REPO),
        env={"FRESH_DATABASE": "{tmp}/fresh.sqlite3", **env},
    )


async def first_report(variant: Variant, directory: Path) -> tuple[Server, dict[str, Any]]:
    """The server of ``variant``, stopped, and what its app reported on its first request."""
    server = Server(variant, directory, time_scale=1.0)
    try:
        await server.wait_ready()
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as client:
            return server, (await client.get("/holdings")).json()
    finally:
        server.stop()


@pytest.mark.anyio
@pytest.mark.e2e
async def test_a_forked_server_holds_no_thread_connection_or_descriptor_of_its_warm_parent(tmp_path: Path) -> None:
    server, report = await first_report(fresh_variant(), tmp_path / "fresh")
    assert report["parent"] == warm_parent().process.pid, "not forked from the warm parent"
    assert report["already_imported"] == ["fastapi", "peewee", "pydantic", "starlette", "uvicorn"]
    assert report["database"] == str(server.tmp_dir / "fresh.sqlite3")  # the variant's env, before the app imported
    assert report["session_leader"]
    for moment in ("at_import", "at_first_request"):
        held = report[moment]
        assert held["threads"] == ["MainThread"], moment  # no worker thread: the pool is empty
        assert held["sqlite_connections"] == 0 and held["database_closed"], moment
        # stdin is /dev/null, stdout and stderr the log; no pipe of the warm parent's requests or answers
        assert held["descriptors"][:3] == ["/dev/null", str(server.log_path), str(server.log_path)], moment
        assert not [d for d in held["descriptors"] if d.startswith("pipe:")], moment


@pytest.mark.anyio
@pytest.mark.e2e
async def test_a_server_whose_environment_sets_a_startup_variable_starts_cold_and_its_log_says_why(
    tmp_path: Path,
) -> None:
    server, report = await first_report(fresh_variant(PYTHONPATH=str(tmp_path)), tmp_path / "cold")
    assert report["parent"] == os.getpid() and "fastapi" not in report["already_imported"]
    assert server.log_path.read_text().splitlines()[0] == (
        "harness: started cold: its environment sets PYTHONPATH, read only as a process starts, "
        "otherwise than the warm parent's"
    )


def test_the_warm_parent_is_stopped_when_the_harness_exits() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", "from harness.forkserver import warm_parent; print(warm_parent().process.pid)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert not is_running(int(completed.stdout))


@pytest.mark.e2e
def test_when_the_harness_is_killed_its_warm_parent_and_every_server_end(tmp_path: Path) -> None:
    with runs.running(tmp_path, *runs.REAL_PACE, *runs.TWO_BUILDS) as process:
        servers = [runs.server_pid(directory) for directory in runs.serving(tmp_path)]
        [parent] = {_parent_of(pid) for pid in servers}
        assert parent != process.pid, "the servers were not forked from the warm parent"
        process.kill()  # SIGKILL: the harness stops nothing
        assert runs.wait_gone([parent, *servers], 5) < 5


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_forked_process_reports_its_exit_code_as_subprocess_does(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.touch()
    for args, code in ((["--version"], 0), (["--no-such-option"], 2)):  # 2: click's usage error
        forked = warm_parent().fork(args, cwd=tmp_path, env=warm_parent().env, log_path=log)
        assert forked.wait(30) == code and forked.poll() == code
    assert "Running uvicorn" in log.read_text() and "No such option '--no-such-option'" in log.read_text()


def test_when_the_warm_parent_dies_its_servers_end_and_say_so_and_it_starts_no_more(tmp_path: Path) -> None:
    parent = ForkServer()
    log = tmp_path / "server.log"
    log.touch()
    args = ["tests.harness.fresh_app:app", "--app-dir", str(runs.REPO), "--port", "0"]
    env = {**parent.env, "FRESH_DATABASE": str(tmp_path / "fresh.sqlite3")}
    try:
        server = parent.fork(args, cwd=tmp_path, env=env, log_path=log)
        runs.wait_until(lambda: "Uvicorn running on" in log.read_text(), 30, "the server never listened")
        parent.process.kill()
        assert server.wait(10) == LOST_EXIT_CODE  # it got SIGTERM from Linux; its exit code went with its parent
        with pytest.raises(WarmStartError, match="the warm parent exited with code -9"):
            parent.fork(args, cwd=tmp_path, env=env, log_path=log)
    finally:
        parent.stop()


@pytest.mark.parametrize("end", ["stopped", "sigterm"])
def test_when_the_warm_parent_ends_what_its_servers_apps_started_ends_too(tmp_path: Path, end: str) -> None:
    # "sigterm" is what Linux sends the warm parent when the harness dies (die_with_parent).
    parent = ForkServer()
    log = tmp_path / "server.log"
    log.touch()
    args = ["tests.harness.spawning_app:stubborn", "--app-dir", str(runs.REPO), "--port", "0"]
    try:
        server = parent.fork(
            args, cwd=tmp_path, env={**parent.env, "SPAWNING_PIDS": str(tmp_path / "children")}, log_path=log
        )
        runs.wait_until(lambda: "Uvicorn running on" in log.read_text(), 30, "the server never listened")
        children = [int(pid) for pid in (tmp_path / "children").read_text().split()]
        if end == "sigterm":
            parent.process.send_signal(signal.SIGTERM)
        else:
            parent.stop()
        assert parent.process.wait(10) == 0  # it ended its servers itself, within END_TIMEOUT, then exited
        runs.wait_gone([server.pid, *children], 5)
    finally:
        parent.stop()
