"""What the harness's own PostgreSQL server costs, next to its floor: start, stop, a fresh database.

Usage: python benchmarks/postgres_server.py [N] [--trial-pairs P]   (default 20 and 3; from the repository root)

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
  (the harness's choice for its own server), taken in turn so drift falls on both alike;
- a trial on PostgreSQL against one on SQLite, in turn, N of each (``--trial-pairs``, default
  3): ``harness run --scenario burst --variant unpatched --jobs 1 --trials 4 --database D``,
  the whole command and each trial after the first (from the trials' start times: what one
  more trial costs, its servers started while the one before stops); the floor is
  ``benchmarks/floor.py`` (one trial: uvicorn, seed, burst, stop), on PostgreSQL with a
  database made and dropped around it on a server already running.
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
from datetime import datetime
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
    parser.add_argument("--trial-pairs", type=int, default=3, help="runs on each database (default: 3)")
    args = parser.parse_args()
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    version = subprocess.run([find_binaries() / "postgres", "--version"], capture_output=True, text=True, check=True)
    print(f"{os.cpu_count()} cores; {version.stdout.strip()}; load average at the start {_load()}", flush=True)
    rows = [("", "harness, ms", "floor, ms")]
    for section in SECTIONS:
        rows += section(args.n)
    rows += _trial_cost(args.trial_pairs)
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


TRIALS = 4  # per harness run of the trial section: the first, and three to time one more trial by
HARNESS = str(Path(sys.executable).with_name("harness"))  # the console script a user types, of this interpreter


def _trial_cost(n: int) -> Rows:
    """A trial of the unpatched build under burst on each database, N runs of each in turn, and the floor's."""
    whole: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    each: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    floor: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    with PostgresServer.start() as server, tempfile.TemporaryDirectory() as out:
        for number in range(n):
            for database in ("sqlite", "postgres") if number % 2 else ("postgres", "sqlite"):
                began = time.perf_counter()
                ran = run([HARNESS, "run", *_BURST, "--database", database, "--out", out], timeout=300, cwd=ROOT)
                whole[database].append(time.perf_counter() - began)
                if ran.returncode != 0:
                    sys.exit(f"harness run --database {database}: {ran.status}\n{ran.stderr}")
                each[database].append(_per_trial(Path(out)))
                command = [sys.executable, str(ROOT / "benchmarks" / "floor.py")]
                began = time.perf_counter()
                ran = run([*command, *([server.display_url] if database == "postgres" else [])], timeout=120, cwd=ROOT)
                floor[database].append(time.perf_counter() - began)
                if ran.returncode != 0:
                    sys.exit(f"floor.py on {database}: {ran.status}\n{ran.stderr}")
    ratio = [p / s for p, s in zip(each["postgres"], each["sqlite"], strict=True)]
    floor_ratio = [p / s for p, s in zip(floor["postgres"], floor["sqlite"], strict=True)]
    return [
        (f"a trial of unpatched under burst, {n} of each, in turn:", "", ""),
        (f"  harness run --trials {TRIALS}, whole command, SQLite", _ms(whole["sqlite"]), "-"),
        (f"  harness run --trials {TRIALS}, whole command, PostgreSQL", _ms(whole["postgres"]), "-"),
        ("  each trial after the first, SQLite (floor: one trial)", _ms(each["sqlite"]), _ms(floor["sqlite"])),
        ("  each trial after the first, PostgreSQL (floor: one trial)", _ms(each["postgres"]), _ms(floor["postgres"])),
        ("  PostgreSQL / SQLite, per trial (a ratio, not ms)", spread(ratio), spread(floor_ratio)),
    ]


_BURST = ("--scenario", "burst", "--variant", "unpatched", "--jobs", "1", "--trials", str(TRIALS))


def _per_trial(out: Path) -> float:
    """Seconds from the first trial's start to the last's, per trial, of the newest run in ``out``."""
    newest = max(out.glob("*/trials.jsonl"), key=lambda path: path.stat().st_mtime)
    starts = sorted(datetime.fromisoformat(json.loads(line)["started_at"]) for line in newest.open())
    newest.parent.rename(newest.parent.with_name(f"done-{newest.parent.name}"))  # the next run's folder is new
    return (starts[-1] - starts[0]).total_seconds() / (len(starts) - 1)


# Each takes N and gives its rows, printed in this order.
SECTIONS: tuple[Callable[[int], Rows], ...] = (_in_memory, _on_disk)

if __name__ == "__main__":
    main()
