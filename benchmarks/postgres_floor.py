"""The floor of the harness's own PostgreSQL server: plain initdb, pg_ctl and psycopg2, no harness code.

Usage: python benchmarks/postgres_floor.py [N [FOLDER]]   (N default 20; FOLDER, where the clusters are
made, by default the temporary folder)

Prints one JSON line: the seconds of N starts (initdb + ``pg_ctl start -w`` + an empty template
database), of N stops (``pg_ctl stop -m fast -w`` + the folder removed), and on the first server of N
CREATE DATABASE from the template and N DROP DATABASE. The settings, the copy strategy and, as
root, the user are the harness's.
"""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

BIN = Path(shutil.which("initdb") or sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).resolve().parent
AS = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}  # initdb refuses root
SETTINGS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB"
)
QUIET = {"check": True, "stdout": subprocess.DEVNULL, **AS}

n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
parent = sys.argv[2] if len(sys.argv) > 2 else None
times: dict[str, list[float]] = {"start": [], "stop": [], "create": [], "drop": []}
for number in range(n):
    folder = tempfile.mkdtemp(prefix="floor-postgres-", dir=parent)
    if AS:
        shutil.chown(folder, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pg_ctl = [BIN / "pg_ctl", "-D", f"{folder}/data", "-w"]
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder} {SETTINGS}"
    began = time.perf_counter()
    initdb = [BIN / "initdb", "-D", f"{folder}/data", "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"]
    subprocess.run([*initdb, "--no-sync"], **QUIET)
    subprocess.run([*pg_ctl, "-l", f"{folder}/server.log", "-o", options, "start"], **QUIET)
    connection = psycopg2.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("CREATE DATABASE template_db TEMPLATE template0")
        times["start"].append(time.perf_counter() - began)
        if number == 0:
            for kind, statement in (
                ("create", "CREATE DATABASE db_{} TEMPLATE template_db STRATEGY FILE_COPY"),
                ("drop", "DROP DATABASE db_{} WITH (FORCE)"),
            ):
                for database in range(n):
                    began = time.perf_counter()
                    cursor.execute(statement.format(database))
                    times[kind].append(time.perf_counter() - began)
    connection.close()
    began = time.perf_counter()
    subprocess.run([*pg_ctl, "-m", "fast", "stop"], **QUIET)
    shutil.rmtree(folder)
    times["stop"].append(time.perf_counter() - began)
print(json.dumps(times))
