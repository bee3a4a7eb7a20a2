"""Tests run in parallel (``pytest -n 2``) share no port, database or output folder.

The outer test runs this module's four server tests under ``pytest -n 2`` in a
subprocess, two at a time, as on the two cores the suite is held to; each writes down
what it used, and the outer test compares.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from tests.conftest import StartServer
from tests.harness.runs import REPO

_NOTES = "HARNESS_TEST_ISOLATION_NOTES"
_HOLD = 2.0  # seconds each server stays up when noted, so that the two workers' overlap


@pytest.mark.e2e
@pytest.mark.anyio
@pytest.mark.parametrize("number", range(4))
async def test_a_server_of_one_parallel_test(number: int, start_server: StartServer, tmp_path: Path) -> None:
    server = await start_server("patched")
    assert server.tmp_dir.is_relative_to(tmp_path) and server.port
    notes = os.environ.get(_NOTES)
    if notes:
        began = time.time()
        await anyio.sleep(_HOLD)
        note = {
            "worker": os.environ.get("PYTEST_XDIST_WORKER"),
            "port": server.port,
            "database": str(server.tmp_dir / "app.sqlite3"),
            "folder": str(tmp_path),
            "up": [began, time.time()],
        }
        with open(notes, "a", encoding="utf-8") as file:
            file.write(json.dumps(note) + "\n")


@pytest.mark.e2e
@pytest.mark.slow
def test_pytest_n_2_gives_each_test_its_own_port_database_and_folder(tmp_path: Path) -> None:
    notes = tmp_path / "notes.jsonl"
    inner = f"{Path(__file__).relative_to(REPO)}::test_a_server_of_one_parallel_test"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "2",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path}/inner",
            inner,
        ],
        cwd=REPO,
        env={**os.environ, _NOTES: str(notes)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    used = [json.loads(line) for line in notes.read_text().splitlines()]
    assert len(used) == 4 and len({u["worker"] for u in used}) > 1
    assert len({u["database"] for u in used}) == 4 and len({u["folder"] for u in used}) == 4
    overlapping = [
        (a, b) for a, b in itertools.combinations(used, 2) if a["up"][0] < b["up"][1] and b["up"][0] < a["up"][1]
    ]
    assert overlapping, "no two servers were up at the same time; nothing was compared"
    assert all(a["port"] != b["port"] for a, b in overlapping)
