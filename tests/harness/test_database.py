"""Runs on PostgreSQL, end to end: the harness's own server, or one of the user's; real servers, no mocks."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from harness.errors import ExitCode
from harness.postgres import PostgresServer
from harness.results import read_results
from tests.harness import runs

PASSWORD = "s3cret-for-the-test"
BURST_ONCE = ("--scenario", "burst", "--trials", "1")
# Under burst the patched build needs more connections than a stock server's 97 in some trials
# (scenarios/burst.toml): a test of what every build gets uses 10 at once.
WAVES_ONCE = ("--scenario", "waves", "--trials", "1")


def run_clusters(run_dir: Path) -> str:
    """Where the run's own PostgreSQL clusters are (a glob of their folders), as its record names them."""
    server = json.loads((run_dir / "results.json").read_text())["database_server"]
    found = re.search(r" in (\S+\*) ", server)
    assert found, server
    return found[1]


def cluster_processes(clusters: str) -> list[int]:
    """The processes of the run's clusters: the postmasters name their folder, and all work in their data folder."""
    prefix = clusters.rstrip("*")
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            named = prefix in (process / "cmdline").read_text()
            if named or os.readlink(process / "cwd").startswith(prefix):
                found.append(int(process.name))
    return found


def no_cluster_left(clusters: str) -> bool:
    return not cluster_processes(clusters) and not glob.glob(clusters)


def the_run(out: Path) -> Path:
    [results] = out.glob("*/results.json")
    return results.parent


@pytest.fixture
def users_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server as a user runs one: password authentication, a database of the user's in it."""
    with PostgresServer.start(password=PASSWORD) as server:
        yield server


@pytest.mark.e2e
def test_on_postgres_each_build_gets_a_database_its_connections_are_counted_and_no_server_is_left(
    tmp_path: Path,
) -> None:
    completed = runs.harness(
        "run", "--database", "postgres", *WAVES_ONCE, "--variant", "patched", "--variant", "recommended",
        "--out", tmp_path, timeout=180,
    )  # fmt: skip

    assert completed.returncode == ExitCode.OK, completed.stderr
    assert "patched, recommended on PostgreSQL" in completed.stderr
    assert "connections of each build:" in completed.stdout
    run_dir = the_run(tmp_path)
    result = read_results(run_dir / "results.json")
    assert result.databases == {"patched": "postgres", "recommended": "postgres"}
    assert result.database_server and result.database_server.startswith("the harness's own, a cluster per app server")
    assert result.environment["postgres_max_connections"] == "100"
    assert result.environment["postgres_superuser_reserved_connections"] == "3"
    assert "max_connections 100, the last 3 for superusers only" in completed.stdout
    trials = {t.variant: t for t in result.trials}
    for trial in trials.values():
        assert trial.database == "postgres" and trial.error is None
        assert trial.connections and trial.peak_connections == max(s.open for s in trial.connections) >= 1
    # The patch closes every connection it opens; Peewee's advice today leaves the one the lazy
    # items query opened during response validation open on each worker thread that ran it.
    assert trials["patched"].leaked_connections == 0 and trials["patched"].unclosed_connections == 0
    assert trials["recommended"].leaked_connections and trials["recommended"].unclosed_connections
    summaries = {s.variant: s for s in result.summaries}
    assert summaries["recommended"].leaking_trials == 1
    assert no_cluster_left(run_clusters(run_dir))


@pytest.mark.e2e
def test_ctrl_c_in_a_postgres_run_stops_its_server_and_keeps_the_trials_measured(tmp_path: Path) -> None:
    options = ("--database", "postgres", "--scenario", "burst", "--trials", "40", "--jobs", "1", *runs.TWO_BUILDS)
    with runs.running(tmp_path, *options) as process:
        runs.wait_until(lambda: _trials_written(tmp_path) >= 1, 120, "no trial was written")
        clusters = run_clusters(the_run(tmp_path))
        assert cluster_processes(clusters), "its PostgreSQL server is not running"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)

    assert process.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err
    result = read_results(the_run(tmp_path) / "results.json")
    assert not result.complete and result.trials
    assert {t.database for t in result.trials} == {"postgres"}
    assert no_cluster_left(clusters)


@pytest.mark.e2e
def test_a_harness_killed_outright_leaves_no_postgres_server(tmp_path: Path) -> None:
    with runs.running(tmp_path, "--database", "postgres", *runs.REAL_PACE, *runs.TWO_BUILDS) as process:
        clusters = run_clusters(the_run(tmp_path))
        assert cluster_processes(clusters)
        time.sleep(1.5)  # seeded, and the first tabs are in flight
        process.kill()  # SIGKILL: the harness stops nothing; its keeper sees its pipe close
        process.wait()
        runs.wait_until(lambda: no_cluster_left(clusters), 30, "PostgreSQL outlived the harness by 30 s")

    recovered = runs.harness("recover", the_run(tmp_path), timeout=60)

    assert recovered.returncode == ExitCode.OK, recovered.stderr
    trials = read_results(the_run(tmp_path) / "results.json").trials
    assert trials and {t.database for t in trials} == {"postgres"}


@pytest.mark.e2e
def test_a_wrong_password_in_database_url_is_a_usage_error_that_does_not_print_it(
    tmp_path: Path, users_server: PostgresServer
) -> None:
    wrong = users_server.display_url.replace("postgres@", "postgres:not-the-password@")

    completed = runs.harness("run", "--database", "postgres", *BURST_ONCE, "--database-url", wrong, "--out", tmp_path)

    assert completed.returncode == ExitCode.USAGE_ERROR
    error = completed.stderr.splitlines()[-1]
    assert error.startswith("harness: error: ") and "password authentication failed" in error
    assert "not-the-password" not in completed.stderr + completed.stdout
    assert "Traceback" not in completed.stderr


@pytest.mark.e2e
def test_on_the_users_server_the_harness_drops_its_own_databases_and_touches_no_other(
    tmp_path: Path, users_server: PostgresServer
) -> None:
    url = users_server.display_url.replace("postgres@", f"postgres:{PASSWORD}@")
    connection = psycopg2.connect(url)
    connection.autocommit = True  # CREATE DATABASE runs outside a transaction
    connection.cursor().execute("CREATE DATABASE shop")
    connection.close()
    before = _databases(url)

    completed = runs.harness(
        "run", "--database", "postgres", *WAVES_ONCE, "--variant", "patched", "--database-url", url,
        "--out", tmp_path, timeout=180,
    )  # fmt: skip

    assert completed.returncode == ExitCode.OK, completed.stderr
    assert PASSWORD not in (the_run(tmp_path) / "results.json").read_text()
    result = read_results(the_run(tmp_path) / "results.json")
    assert [t.database for t in result.trials] == ["postgres"] and result.trials[0].peak_connections
    assert _databases(url) == before and "shop" in before


def _databases(url: str) -> set[str]:
    with psycopg2.connect(url) as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")
        names = {name for (name,) in cursor.fetchall()}
    connection.close()
    return names


def _trials_written(out: Path) -> int:
    lines = list(out.glob("*/trials.jsonl"))
    return len(lines[0].read_text().splitlines()) if lines else 0
