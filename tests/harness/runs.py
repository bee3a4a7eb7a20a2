"""Drive ``harness run`` the way a shell does, and read what it leaves on disk."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import is_running

REPO = Path(__file__).resolve().parents[2]
INSTALLED_HARNESS = Path(sys.executable).parent / "harness"  # the console script, as a user runs it

# The tutorial's ten tabs at its real pace: a trial takes about 10 s, so a test has time to act.
REAL_PACE = ("--scenario", "tutorial-tabs", "--time-scale", "1")
# Two of the built-in builds, one expected to fail and one clean: two servers per trial, for
# the tests about stopping, killing and isolating runs rather than about the builds themselves.
TWO_BUILDS = ("--variant", "unpatched", "--variant", "patched")


def start(
    out: Path | None,
    *options: str,
    env: dict[str, str] | None = None,
    background: bool = False,
    command: str = "run",
    prelude: str = "",
) -> subprocess.Popen[str]:
    """``harness COMMAND`` as a shell starts it: Ctrl-C reaches a foreground job; a background job ignores it.

    Set explicitly, so the tests do not depend on how pytest itself was started. ``prelude``
    is Python run in the harness's process first: what else happens in that process. With
    ``out`` None, no ``--out`` is given (``harness recover``).
    """
    handler = "signal.SIG_IGN" if background else "signal.default_int_handler"
    launch = (
        f"import runpy, signal\nsignal.signal(signal.SIGINT, {handler})\n{prelude}\n"
        "runpy.run_module('harness', run_name='__main__')\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", launch, command, *(("--out", str(out)) if out else ()), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def file_size_limit(size: int) -> str:
    """A prelude for :func:`start`: as on a full disk, no file of the process or its children grows past ``size``.

    A write past it fails with EFBIG; SIGXFSZ, which would end the writer instead, is ignored.
    """
    return (
        "import resource\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({size}, {size}))"
    )


def paused_in(name: str, entered: Path, release: Path) -> str:
    """A prelude for :func:`start`: ``harness.cli.NAME`` touches ``entered``, then waits for ``release`` (60 s at most).

    A step that takes milliseconds held open, so a test's signals surely land inside it.
    """
    return f"""
import pathlib, time, harness.cli
paused = harness.cli.{name}
def pause(*args, **kwargs):
    pathlib.Path({str(entered)!r}).touch()
    deadline = time.monotonic() + 60
    while not pathlib.Path({str(release)!r}).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    return paused(*args, **kwargs)
harness.cli.{name} = pause
"""


def again_and_again(process: subprocess.Popen[str], entered: Path, release: Path) -> None:
    """Ctrl-C ten times, 10 ms apart, once ``process`` is paused at ``entered`` (:func:`paused_in`); then go on."""
    wait_until(entered.exists, 30, "the process never came to the step it pauses in")
    for _ in range(10):
        process.send_signal(signal.SIGINT)
        time.sleep(0.01)
    release.touch()


def on_a_full_filesystem(folder: Path, inodes: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``harness ARGS`` with ``folder`` a filesystem of its own that holds ``inodes`` files and folders at most.

    A full disk for real: a tmpfs, mounted in a mount namespace of the harness's own (``unshare -rm``)
    and gone with it. The test is skipped where there is no such namespace to be had.
    """
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], check=False).returncode:
        pytest.skip("no private mount namespace here (unshare -rm)")
    mount = f'mount -t tmpfs -o size=10m,nr_inodes={inodes} tmpfs "{folder}" && exec "$@"'
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", mount, "sh", sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def harness(
    *args: str | Path, timeout: float = 300, python: str | Path = sys.executable
) -> subprocess.CompletedProcess[str]:
    """``harness ARGS`` as a user types it, run to its end (by default on the test suite's own interpreter)."""
    return subprocess.run(
        [str(python), "-m", "harness", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def record_burst(folder: Path) -> None:
    """``harness run --scenario burst --trials 2`` into ``folder/out``, what it printed kept for :func:`recorded`."""
    record_run(folder, "--scenario", "burst", "--trials", "2")


def record_run(folder: Path, *options: str) -> None:
    """``harness run OPTIONS`` into ``folder/out``, what it printed kept for :func:`recorded`."""
    completed = harness("run", *options, "--out", folder / "out", timeout=120)
    kept = {name: getattr(completed, name) for name in ("args", "returncode", "stdout", "stderr")}
    (folder / "completed.json").write_text(json.dumps(kept))


def recorded(folder: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The ``--out`` folder of a run :func:`record_burst` made, and the process as it ended."""
    return folder / "out", subprocess.CompletedProcess(**json.loads((folder / "completed.json").read_text()))


@contextlib.contextmanager
def running(out: Path, *options: str, servers: int = 2, background: bool = False) -> Iterator[subprocess.Popen[str]]:
    """``harness run`` with these options, handed over once ``servers`` servers are serving."""
    process = start(out, *options, background=background)
    try:
        wait_until(lambda: len(serving(out)) >= servers, 60, "the servers never came up")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def wait_until(condition: Callable[[], bool], timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.02)


def serving(out: Path) -> list[Path]:
    """The server folders whose uvicorn reported it is listening."""
    return [log.parent for log in sorted(out.glob("*/servers/*/server.log")) if "Uvicorn running" in log.read_text()]


def server_pid(server_dir: Path) -> int:
    """The pid uvicorn logged for itself."""
    for line in (server_dir / "server.log").read_text().splitlines():
        if "Started server process [" in line:
            return int(line.split("[")[1].split("]")[0])
    raise AssertionError(f"no pid in {server_dir / 'server.log'}")


def wait_gone(pids: list[int], timeout: float) -> float:
    """Seconds until none of ``pids`` runs; fails after ``timeout``."""
    start = time.monotonic()
    wait_until(lambda: not any(is_running(pid) for pid in pids), timeout, f"servers still running after {timeout} s")
    return time.monotonic() - start
