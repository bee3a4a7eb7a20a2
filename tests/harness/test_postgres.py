"""PostgreSQL for a run: real servers, started by the harness or "the user's" (one started here with a password)."""

from __future__ import annotations

import contextlib
import glob
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest

from harness import postgres, postgres_keeper
from harness.errors import DatabaseError, ExitCode
from harness.forkserver import ForkServer
from harness.postgres import (
    APP_ROLE,
    DEFAULT_DATABASE_PREFIX,
    DEFAULT_SAMPLE_INTERVAL,
    PostgresServer,
    ServerState,
    database_name,
    find_binaries,
)
from harness.postgres_pool import PostgresPool
from harness.results import read_results
from harness.settings import DEFAULT_POSTGRES_MAX_CONNECTIONS
from tests.conftest import is_running
from tests.harness import runs
from tests.harness.runs import wait_until
from tests.harness.server.test_standard_library_only import module_level_imports

PASSWORD = "right-horse-battery-2718"
WRONG_PASSWORD = "wrong-staple-3141"
STARTED_WITHIN = postgres.DEFAULT_START_TIMEOUT + 30  # seconds for a python -c to import and start a server
GONE_WITHIN = 30.0  # seconds for a keeper to stop its server and remove its folder, on a loaded machine
SETTLE = 10.0  # seconds for pg_stat_activity to show a connection opened or closed, on a loaded machine

# A harness that starts a server, then a process that outlives it (had it inherited the keeper's
# pipe, the keeper would never read its end) and the warm parent of the uvicorn servers, says
# where they are and waits to be ended.
HARNESS = """
import json, subprocess, sys, time
from harness.forkserver import warm_parent
from harness.postgres import PostgresServer
server = PostgresServer.start()
outliver = subprocess.Popen(["sleep", "600"], start_new_session=True)
warm_parent()
print(json.dumps({"folder": str(server.folder), "keeper": server.keeper_pid, "outliver": outliver.pid}), flush=True)
if sys.argv[1] == "sleep":
    time.sleep(600)
"""


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    """The harness's own server; afterwards closed, no process of it left and its folder gone."""
    with PostgresServer.start() as started:
        yield started
    assert started.folder is not None
    assert not started.folder.exists() and not server_processes(started.folder)


@pytest.fixture
def guarded() -> Iterator[PostgresServer]:
    """A server started with a password: the user's, for connect()."""
    with PostgresServer.start(password=PASSWORD) as started:
        yield started


def server_processes(folder: Path) -> list[int]:
    """The processes of the server in ``folder``: the postmaster names it, and all work in its data folder."""
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            named = str(folder) in (process / "cmdline").read_text()
            if named or os.readlink(process / "cwd").startswith(str(folder)):
                found.append(int(process.name))
    return found


def query(url: str, statement: str) -> list[tuple[object, ...]]:
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def url(server: PostgresServer, database: str = "postgres", *, user: str = "postgres", password: str = "") -> str:
    port = urlsplit(server.display_url).port
    return f"postgresql://{user}{':' if password else ''}{password}@127.0.0.1:{port}/{database}"


def databases(admin_url: str) -> set[str]:
    return {name for (name,) in query(admin_url, "SELECT datname FROM pg_database")}


def first_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    assert select.select([process.stdout], [], [], timeout)[0], f"nothing said within {timeout} s"
    return process.stdout.readline()


def counted(server: PostgresServer, name: str, count: int) -> bool:
    """Whether the last sample of ``name`` counts ``count`` connections, and so does pg_stat_activity now."""
    samples = server.samples(name)
    return bool(samples) and samples[-1][1] == count and server.open_connections(name) == count


@pytest.mark.e2e
def test_each_label_gets_a_fresh_empty_database_and_close_leaves_no_process_nor_folder() -> None:
    server = PostgresServer.start()
    assert server.owned and server.folder is not None and server_processes(server.folder)
    assert server.display_url == url(server)
    assert server.initdb_seconds is not None and server.start_seconds is not None
    first, second = server.create_database("Unpatched trial-1"), server.create_database("Unpatched trial-1")
    assert first.name != second.name and first.url != second.url
    assert first.name.startswith(DEFAULT_DATABASE_PREFIX) and first.name.endswith("_unpatched_trial_1")
    assert first.url == url(server, first.name, user=APP_ROLE)  # trust authentication: no password
    assert query(first.url, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [(False,)]
    query(first.url, "CREATE TABLE item (id serial PRIMARY KEY); INSERT INTO item DEFAULT VALUES")
    assert query(first.url, "SELECT count(*) FROM item") == [(1,)]
    assert query(second.url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    assert query(first.url, "SHOW listen_addresses") == [("127.0.0.1",)]
    assert query(first.url, "SHOW fsync") == [("off",)]
    # A stock server's room for the app, the harness's own two connections on top
    assert query(first.url, "SHOW max_connections") == [(str(DEFAULT_POSTGRES_MAX_CONNECTIONS + 2),)]
    assert query(first.url, "SHOW superuser_reserved_connections") == [("3",)]
    assert server.limits() == {
        "postgres_max_connections": "100",
        "postgres_server_version": query(first.url, "SHOW server_version")[0][0],
        "postgres_superuser_reserved_connections": "3",
    }
    server.drop_database(first.name)
    with pytest.raises(psycopg2.OperationalError, match="does not exist"):
        query(first.url, "SELECT 1")
    with pytest.raises(ValueError, match="not a database this server object created"):
        server.drop_database("postgres")
    server.close()
    assert server.state is ServerState.CLOSED and server.stop_seconds is not None
    assert not server.folder.exists() and not server_processes(server.folder)
    assert not is_running(server.keeper_pid or 0)
    server.close()  # again: nothing to do
    with pytest.raises(RuntimeError, match="was closed"):
        server.create_database("late")


def connect_until_refused(database_url: str, most: int) -> tuple[list[psycopg2.extensions.connection], str]:
    """Connections opened to ``database_url`` one after another until the server refuses one (its message)."""
    connections: list[psycopg2.extensions.connection] = []
    try:
        while len(connections) < most:
            connections.append(psycopg2.connect(database_url))
    except psycopg2.OperationalError as exc:
        return connections, str(exc)
    return connections, ""


@pytest.mark.e2e
@pytest.mark.parametrize("max_connections", [DEFAULT_POSTGRES_MAX_CONNECTIONS, 8])
def test_the_app_meets_a_stock_server_s_limit_on_its_own_cluster_whatever_the_others_hold(max_connections: int) -> None:
    with PostgresPool.start(max_connections=max_connections) as pool:
        assert pool.limits["postgres_max_connections"] == str(max_connections)
        assert pool.limits["postgres_superuser_reserved_connections"] == "3"
        first, second = pool.create_database("patched-trial1"), pool.create_database("patched-trial2")
        assert urlsplit(first.url).port != urlsplit(second.url).port  # a cluster each
        for database in (first, second):
            pool.watch(database.name)  # as the pipeline does before the app starts: the sampler's connection
        held, refused = connect_until_refused(first.url, max_connections + 10)
        # The app's role is no superuser: the last 3 slots are not its to take, as on a stock server
        assert len(held) == max_connections - 3
        assert "remaining connection slots are reserved for non-replication superuser connections" in refused
        # Another build's server meets its own limit, whatever the first holds
        others, refused = connect_until_refused(second.url, max_connections + 10)
        assert len(others) == max_connections - 3 and "remaining connection slots are reserved" in refused
        assert pool.open_connections(first.name) == len(held)
        for connection in held + others:
            connection.close()
        for database in (first, second):
            pool.unwatch(database.name)
            pool.drop_database(database.name)
        again = pool.create_database("patched-trial3")  # a free cluster is taken again, none started
        assert urlsplit(again.url).port in {urlsplit(first.url).port, urlsplit(second.url).port}
        folders = pool.folders
    assert folders is not None and not glob.glob(folders)
    assert not server_processes(Path(folders.rstrip("*")))


@pytest.mark.e2e
def test_on_a_user_s_server_every_database_is_made_on_it_and_its_limits_are_recorded(guarded: PostgresServer) -> None:
    with PostgresPool.connect(url(guarded, password=PASSWORD)) as pool:
        first, second = pool.create_database("a"), pool.create_database("b")
        assert urlsplit(first.url).port == urlsplit(second.url).port == urlsplit(guarded.display_url).port
        assert urlsplit(first.url).username == "postgres"  # the user's role, as the URL says
        # The user's server's own limits: the harness's connections count there
        assert pool.limits["postgres_max_connections"] == str(DEFAULT_POSTGRES_MAX_CONNECTIONS + 2)
        assert pool.display_url == guarded.display_url and pool.folders is None


@pytest.mark.e2e
def test_databases_are_created_from_several_threads_at_once(server: PostgresServer) -> None:
    before = databases(url(server))
    names: list[str] = []
    errors: list[BaseException] = []

    def create(number: int) -> None:
        try:
            names.append(server.create_database(f"build-{number}").name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert databases(url(server)) - before == set(names) and len(names) == 8


@pytest.mark.e2e
def test_open_connections_and_the_samples_see_an_outside_client_connect_and_disconnect(server: PostgresServer) -> None:
    database, other = server.create_database("watched"), server.create_database("other")
    server.watch(database.name)
    wait_until(lambda: counted(server, database.name, 0), SETTLE, "no first sample")
    clients = [psycopg2.connect(database.url) for _ in range(3)]
    try:
        wait_until(lambda: counted(server, database.name, 3), SETTLE, "3 connections never counted")
        assert server.open_connections(other.name) == 0  # nor is the harness's own connection, to another
        for client in clients[1:]:
            client.close()
        wait_until(lambda: counted(server, database.name, 1), SETTLE, "2 closed, never counted")
    finally:
        for client in clients:
            client.close()
    wait_until(lambda: counted(server, database.name, 0), SETTLE, "the last one closed, never counted")
    samples = server.unwatch(database.name)
    counts = [count for _, count in samples]
    assert counts[0] == 0 and max(counts) == 3 and counts[-1] == 0
    times = [moment for moment, _ in samples]
    assert all(later - earlier >= 0.9 * DEFAULT_SAMPLE_INTERVAL for earlier, later in itertools.pairwise(times))
    with pytest.raises(KeyError):
        server.unwatch(database.name)


@pytest.mark.e2e
@pytest.mark.parametrize("end", ["exit", "SIGINT", "SIGTERM", "SIGKILL"])
def test_however_the_harness_ends_no_postgres_process_nor_folder_is_left(end: str) -> None:
    # In a session of its own, as a harness in a terminal: the signal goes to its whole group, as Ctrl-C does.
    harness = subprocess.Popen(
        [sys.executable, "-c", HARNESS, "exit" if end == "exit" else "sleep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # a KeyboardInterrupt's traceback
        text=True,
        start_new_session=True,
    )
    said = json.loads(first_line(harness, STARTED_WITHIN) or "{}")
    folder = Path(said["folder"])
    try:
        assert server_processes(folder) and is_running(said["keeper"])
        if end != "exit":
            os.killpg(harness.pid, getattr(signal, end))
        harness.wait(GONE_WITHIN)
        wait_until(lambda: not server_processes(folder) and not folder.exists(), GONE_WITHIN, "the server outlived")
        wait_until(lambda: not is_running(said["keeper"]), GONE_WITHIN, "the keeper outlived its harness")
        assert is_running(said["outliver"])  # it never held the pipe: the keeper saw its end all the same
    finally:
        os.kill(said["outliver"], signal.SIGKILL)
        harness.kill()
        harness.communicate()


@pytest.mark.e2e
def test_if_the_keeper_is_killed_its_server_ends_and_close_removes_the_folder() -> None:
    server = PostgresServer.start()
    assert server.folder is not None and server.keeper_pid is not None
    os.kill(server.keeper_pid, signal.SIGKILL)
    wait_until(lambda: not server_processes(server.folder), GONE_WITHIN, "the server outlived its keeper")
    server.close()
    assert not server.folder.exists()


@pytest.mark.e2e
def test_only_the_harness_and_the_keeper_hold_the_keeper_s_pipe(server: PostgresServer) -> None:
    pipe = os.readlink(f"/proc/{server.keeper_pid}/fd/0")
    assert pipe.startswith("pipe:")
    warm = ForkServer()  # started after the server, as the pipeline does
    child = subprocess.Popen(["sleep", "60"])
    try:
        holders = set()
        for descriptor in Path("/proc").glob("[0-9]*/fd/*"):
            with contextlib.suppress(OSError):
                if os.readlink(descriptor) == pipe:
                    holders.add(int(descriptor.parent.parent.name))
        assert holders == {os.getpid(), server.keeper_pid}
    finally:
        child.kill()
        child.wait()
        warm.stop()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://postgres:{wrong}@{host}/postgres", 'password authentication failed for user "postgres"'),
        ("postgres://nobody:{wrong}@{host}/postgres", 'password authentication failed for user "nobody"'),
        ("postgresql://postgres:{wrong}@127.0.0.1:1/postgres", "Connection refused"),
        ("mysql://postgres:{wrong}@{host}/postgres", "expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"),
    ],
    ids=["wrong password", "no such role", "no server", "not postgresql"],
)
def test_a_user_s_server_that_cannot_be_used_is_a_usage_error_that_never_shows_the_password(
    guarded: PostgresServer, url: str, reason: str
) -> None:
    host = guarded.display_url.split("@")[1].split("/")[0]
    with pytest.raises(DatabaseError) as raised:
        PostgresServer.connect(url.format(wrong=WRONG_PASSWORD, host=host))
    assert raised.value.exit_code == ExitCode.USAGE_ERROR == 4
    assert reason in raised.value.message and "\n" not in raised.value.message
    assert WRONG_PASSWORD not in raised.value.message and PASSWORD not in raised.value.message


@pytest.mark.e2e
def test_on_a_user_s_server_only_the_harness_s_own_databases_are_created_and_dropped(guarded: PostgresServer) -> None:
    admin = url(guarded, password=PASSWORD)
    query(admin, "CREATE DATABASE users_own")
    before = databases(admin)
    user = PostgresServer.connect(admin)
    assert not user.owned and user.display_url == guarded.display_url  # no password
    database = user.create_database("patched-2")
    assert database.name.startswith(DEFAULT_DATABASE_PREFIX) and PASSWORD not in repr(database)
    assert query(database.url, "SELECT current_database()") == [(database.name,)]  # the URL holds the password
    made = databases(admin) - before
    assert len(made) == 2 and all(name.startswith(DEFAULT_DATABASE_PREFIX) for name in made)  # and the template
    user.watch(database.name)
    wait_until(lambda: bool(user.samples(database.name)), SETTLE, "no sample")
    assert user.unwatch(database.name)[-1][1] == 0
    user.close()
    assert databases(admin) == before and "users_own" in before


@pytest.mark.e2e
def test_a_role_that_may_not_create_databases_is_told_so(guarded: PostgresServer) -> None:
    query(url(guarded, password=PASSWORD), f"CREATE ROLE reader LOGIN PASSWORD '{PASSWORD}'")
    with pytest.raises(DatabaseError, match="the role reader may not create databases") as raised:
        PostgresServer.connect(url(guarded, user="reader", password=PASSWORD))
    assert "ALTER ROLE reader CREATEDB" in raised.value.message


def test_without_postgresql_installed_the_error_names_the_install_script(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="PostgreSQL is not installed") as raised:
        find_binaries(path=str(tmp_path), pattern=str(tmp_path / "*" / "bin"))
    assert "tools/install-postgresql" in raised.value.message and raised.value.exit_code == 4
    with pytest.raises(DatabaseError, match=f"no initdb nor postgres in {tmp_path}: run tools/install-postgresql"):
        PostgresServer.start(binaries=tmp_path)


def test_the_newest_installed_version_is_found_after_the_path(tmp_path: Path) -> None:
    for version in ("9.6", "13", "15"):
        folder = tmp_path / "lib" / version / "bin"
        folder.mkdir(parents=True)
        (folder / "initdb").touch()
    assert find_binaries(path=str(tmp_path), pattern=str(tmp_path / "lib" / "*" / "bin")) == folder
    on_path = tmp_path / "local"
    on_path.mkdir()
    for name in ("initdb", "postgres"):
        (on_path / name).touch(mode=0o755)
    assert find_binaries(path=str(on_path), pattern=str(tmp_path / "lib" / "*" / "bin")) == on_path


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs initdb as another user")
def test_as_root_without_a_postgres_user_the_error_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "DEFAULT_SYSTEM_USER", "no-such-user-for-postgres")
    with pytest.raises(DatabaseError, match=r"runs as root.*no 'no-such-user-for-postgres' system user"):
        PostgresServer.start()


def test_a_folder_that_cannot_be_made_is_said_so(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match=f"cannot make the server's folder in {tmp_path / 'nowhere'}"):
        PostgresServer.start(parent=tmp_path / "nowhere")


@pytest.mark.e2e
def test_a_server_that_does_not_start_says_why_with_the_tail_of_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "DEFAULT_SETTINGS", {**postgres.DEFAULT_SETTINGS, "shared_buffers": "plenty"})
    with pytest.raises(DatabaseError, match="postgres exited with code 1") as raised:
        PostgresServer.start()
    assert 'invalid value for parameter "shared_buffers": "plenty"' in raised.value.message


def test_database_names_are_postgresql_identifiers_of_at_most_63_bytes() -> None:
    assert database_name("harness_0a1b2c3d", 7, "Patched (2) é trial 3") == "harness_0a1b2c3d_7_patched_2_trial_3"
    long = database_name("harness_0a1b2c3d", 12, "x" * 100)
    assert len(long.encode()) == 63 and long.startswith("harness_0a1b2c3d_12_x")


def test_the_keeper_imports_the_standard_library_only() -> None:
    imported = module_level_imports(Path(postgres_keeper.__file__)) - {"__future__"}
    assert {name.split(".")[0] for name in imported} <= set(sys.stdlib_module_names)


BURST_150 = """
name = "burst-150"
trials = 1
time_scale = 0.05

[seed]
users = 2
items_per_user = 2

[schedule]
kind = "burst"
requests = 150
"""


@pytest.mark.e2e
@pytest.mark.parametrize("limit", [None, "1000"], ids=["stock limit", "raised"])
def test_the_patched_build_under_150_at_once_meets_a_stock_server_s_limit_until_it_is_raised(
    tmp_path: Path, limit: str | None
) -> None:
    scenario = tmp_path / "burst-150.toml"
    scenario.write_text(BURST_150)
    raised = ("--postgres-max-connections", limit) if limit else ()

    completed = runs.harness(
        "run", "--database", "postgres", "--scenario", scenario, "--variant", "patched", *raised,
        "--out", tmp_path / "out", timeout=300,
    )  # fmt: skip

    [results] = (tmp_path / "out").glob("*/results.json")
    result = read_results(results)
    [trial] = result.trials
    assert result.environment["postgres_max_connections"] == (limit or "100")
    if limit:
        assert completed.returncode == ExitCode.OK, completed.stderr
        assert all(r.outcome == "ok" for r in trial.records) and (trial.peak_connections or 0) > 97
        return
    # The 98th connection at once is refused, as a stock server refuses an app's role that is no superuser
    assert completed.returncode == ExitCode.REGRESSION, completed.stderr
    assert trial.peak_connections == 97
    refused = [r.diagnosis for r in trial.records if r.diagnosis and r.diagnosis.kind == "database-error"]
    assert refused and len(refused) == sum(r.outcome == "server-error" for r in trial.records)
    assert "remaining connection slots are reserved" in refused[0].text
    assert "the server's max_connections was reached" in refused[0].text
    assert "the database server refused a connection or a query" in completed.stdout
