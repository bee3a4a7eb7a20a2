from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path

import httpcore  # noqa: F401  # see below
import httpx
import pytest

from harness.config import builtin_config
from harness.launcher import Server

pytest_plugins = ("pytester",)

# httpcore is imported above, before any test, because httpx imports it only when a client is
# first used and keeps its exception classes then. A pytester test that runs pytest in this
# process (runpytest) removes afterwards every module first imported during it: an httpcore
# imported again after that raises classes httpx no longer recognises, and a timeout escapes
# as httpcore.ReadTimeout instead of httpx.ReadTimeout in whatever test that worker runs next.

StartServer = Callable[..., Awaitable[Server]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that start servers first, then the rest; among each, those marked slow first.

    Tests that start servers take seconds each, those marked slow several times that; the
    rest take milliseconds, but for a few marked slow (a pip resolve, an xdist run). Under ``pytest
    -n auto`` each worker is handed the next test when it is done with one
    (``--maxschedchunk 1`` in pyproject.toml): longest first, the workers finish together on
    quick tests instead of one starting a long one last. Otherwise in collection order.
    """
    items.sort(key=lambda item: (item.get_closest_marker("e2e") is None, item.get_closest_marker("slow") is None))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than the cores. Many tests wait rather than compute (a server's
    stop timeout, a request's, the app's sleeps), and a third worker on 2 cores uses that time:
    the suite took 159 s with 2 workers and 127 s with 3 on the project's 2-core machine."""
    return len(os.sched_getaffinity(0)) + 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start real uvicorn servers of the app's builds; every one is stopped afterwards."""
    servers: list[Server] = []

    async def start(variant: str, *, time_scale: float = 0.05, explore: bool = False) -> Server:
        server = Server(
            builtin_config().variants[variant],
            tmp_path / f"{variant}-{len(servers)}",
            time_scale=time_scale,
            explore=explore,
        )
        servers.append(server)
        await server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()
        assert not is_running(server.pid)


@pytest.fixture(scope="session")
def burst_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``harness run --scenario burst --trials 2`` as a user types it: its ``--out`` folder and the process.

    Run once per test run for the tests that only read what it printed and wrote: the
    command line's output, and its report in a browser.
    """
    from tests.harness import runs  # it imports this module

    return runs.recorded(made_once(tmp_path_factory, "burst-run", runs.record_burst))


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[Server], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(server: Server) -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=30)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def is_running(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder ``name``, filled by ``make`` once per test run however many xdist workers ask for it.

    For what takes seconds to make and is only read afterwards (a virtualenv, a built
    site): a module-scoped fixture alone is made again by every worker that runs one of
    its tests. The workers of a run share the parent of their base temp folder; the first
    to ask makes the folder under a lock while the others wait, then all read it. If
    ``make`` fails, the next to ask tries again, and its test fails with the same error.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made = root / f"{name}.made"
        if not made.exists():
            folder.mkdir(exist_ok=True)
            make(folder)
            made.touch()
    return folder


def kept_between_runs(
    config: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    inputs: Iterable[str],
    make: Callable[[Path], None],
) -> Path:
    """:func:`made_once`, kept in pytest's cache for the next run while every one of ``inputs`` is unchanged.

    For what takes many seconds to make from files that rarely change (a virtualenv
    installed from pinned requirements): ``inputs`` are all it is made from, so a folder
    made from other inputs is never read; it is removed, with one left half made, before
    the folder is made anew. Without the cache (``-p no:cacheprovider``), made once per run.
    """
    cache: pytest.Cache | None = getattr(config, "cache", None)
    if cache is None:
        return made_once(tmp_path_factory, name, make)
    key = hashlib.sha256("\0".join(inputs).encode()).hexdigest()[:16]
    root = cache.mkdir(name)
    folder = root / key
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made = root / f"{key}.made"
        if not made.exists():
            for stale in root.iterdir():
                if stale.is_dir():
                    shutil.rmtree(stale)
                elif stale.name != "lock":
                    stale.unlink()
            folder.mkdir()
            make(folder)
            made.touch()
    return folder
