"""What the harness's own PostgreSQL server costs, next to its floor: start, stop, a fresh database.

Usage: python benchmarks/postgres_server.py [N]   (default 20; from the repository root)

Each figure is the median (min-max) of N, in milliseconds, for the cluster in memory (the
harness's choice, :func:`harness.postgres.folder_parent`, when /dev/shm has room) and on disk
(the temporary folder):

- server: N times ``PostgresServer.start()`` (the keeper started, initdb, postgres ready, the
  template made; the keeper's own figures for initdb and for postgres until ready below it)
  and ``close()`` (the keeper told, the server stopped, the folder removed, the keeper gone);
- databases: on one server, N ``create_database`` and N ``drop_database``;
- the floor, ``benchmarks/postgres_floor.py N FOLDER``: the same with plain initdb,
  ``pg_ctl -w`` and psycopg2, in a process of its own;
- the copy strategy: on one of the harness's servers, N ``CREATE DATABASE ... TEMPLATE``
  of an empty template with STRATEGY WAL_LOG (PostgreSQL 15's default) and N with FILE_COPY
  (the harness's choice for its own server), taken in turn so drift falls on both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2
from _figures import run, spread

from harness import postgres
from harness.postgres import PostgresServer, find_binaries, folder_parent

ROOT = Path(__file__).resolve().parents[1]
START = "a server started: initdb, postgres ready, the template made"
STOP = "a server stopped and its folder removed"
CREATE = "a fresh database created from the template"
DROP = "a database dropped"

Rows = list[tuple[str, str, str]]  # what, the harness's figure, the floor's ("-": none)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=20, help="samples of each figure (default: 20)")
    args = parser.parse_args()
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    version = subprocess.run([find_binaries() / "postgres", "--version"], capture_output=True, text=True, check=True)
    print(f"{os.cpu_count()} cores; {version.stdout.strip()}; load average at the start {_load()}", flush=True)
    rows = [("", "harness, ms", "floor, ms")]
    for section in SECTIONS:
        rows += section(args.n)
    print()
    width = max(len(what) for what, _, _ in rows)
    for what, mine, theirs in rows:
        print(f"{what:<{width}}  {mine:<24}  {theirs}")
    print(f"\nload average at the end {_load()}")


def _in_memory(n: int) -> Rows:
    parent = folder_parent()
    if parent != postgres.DEFAULT_MEMORY_FOLDER:
        return [(f"the cluster in memory: no room in {postgres.DEFAULT_MEMORY_FOLDER}", "-", "-")]
    return _place(n, "in memory", parent)


def _on_disk(n: int) -> Rows:
    return _place(n, "on disk", Path(tempfile.gettempdir()))


def _place(n: int, place: str, parent: Path) -> Rows:
    """Every figure with the clusters in ``parent``."""
    floor = _floor(n, parent)
    rows = [(f"the cluster {place}, in {parent}:", "", "")]
    for section in (_server, _databases, _strategies):
        rows += [(f"  {what}", mine, floor.get(what, theirs)) for what, mine, theirs in section(n, parent)]
    return rows


def _server(n: int, parent: Path) -> Rows:
    started, initdb, ready, closed, stopped = [], [], [], [], []
    for _ in range(n):
        began = time.perf_counter()
        server = PostgresServer.start(parent=parent)
        started.append(time.perf_counter() - began)
        initdb.append(server.initdb_seconds or 0.0)
        ready.append(server.start_seconds or 0.0)
        began = time.perf_counter()
        server.close()
        closed.append(time.perf_counter() - began)
        stopped.append(server.stop_seconds or 0.0)
    return [
        (START, _ms(started), "-"),
        ("  of which initdb (the keeper's figure)", _ms(initdb), "-"),
        ("  of which postgres until ready (the keeper's figure)", _ms(ready), "-"),
        (STOP, _ms(closed), "-"),
        ("  of which postgres until stopped (the keeper's figure)", _ms(stopped), "-"),
    ]


def _databases(n: int, parent: Path) -> Rows:
    created, dropped = [], []
    with PostgresServer.start(parent=parent) as server:
        names = []
        for number in range(n):
            began = time.perf_counter()
            names.append(server.create_database(f"bench-{number}").name)
            created.append(time.perf_counter() - began)
        for name in names:
            began = time.perf_counter()
            server.drop_database(name)
            dropped.append(time.perf_counter() - began)
    return [(CREATE, _ms(created), "-"), (DROP, _ms(dropped), "-")]


def _strategies(n: int, parent: Path) -> Rows:
    times: dict[str, list[float]] = {"WAL_LOG": [], "FILE_COPY": []}
    with PostgresServer.start(parent=parent) as server:
        connection = psycopg2.connect(server.display_url)  # trust authentication: no password
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE bench_template TEMPLATE template0")
            for number in range(n):
                for strategy in times if number % 2 else reversed(times):
                    name = f"bench_{strategy}_{number}"
                    began = time.perf_counter()
                    cursor.execute(f"CREATE DATABASE {name} TEMPLATE bench_template STRATEGY {strategy}")
                    times[strategy].append(time.perf_counter() - began)
                    cursor.execute(f"DROP DATABASE {name}")
        connection.close()
    return [(f"CREATE DATABASE ... STRATEGY {strategy}", _ms(times[strategy]), "-") for strategy in times]


def _floor(n: int, parent: Path) -> dict[str, str]:
    command = [sys.executable, str(ROOT / "benchmarks" / "postgres_floor.py"), str(n), str(parent)]
    ran = run(command, timeout=60 + 10 * n, cwd=ROOT)
    if ran.returncode != 0:
        print(f"postgres_floor.py: {ran.status}\n{ran.stderr}", flush=True)
        return {}
    times = json.loads(ran.stdout)
    return {
        START: _ms(times["start"]),
        STOP: _ms(times["stop"]),
        CREATE: _ms(times["create"]),
        DROP: _ms(times["drop"]),
    }


def _ms(seconds: list[float]) -> str:
    return spread([value * 1000 for value in seconds], 1)


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# Each takes N and gives its rows, printed in this order.
SECTIONS: tuple[Callable[[int], Rows], ...] = (_in_memory, _on_disk)

if __name__ == "__main__":
    main()
