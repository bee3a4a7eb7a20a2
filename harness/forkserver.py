"""Start each server forked from a warm parent that has already imported its frameworks.

``python -m uvicorn`` takes about 0.65 s to listen, half of it importing uvicorn, FastAPI,
Pydantic and Peewee. Each harness process starts one warm parent
(:mod:`harness.server.forkserver`) that imports them once, and :func:`start_uvicorn` asks
it for each server: a fresh process (no thread, connection or app state inherited; the
app, its environment and the tracer come in the child, as in a cold start), in a
session of its own, which the warm parent ends when it ends, which it does when the
harness stops it (at exit) or dies. Its handle, :class:`ForkedProcess`, is the part of
:class:`subprocess.Popen` that :class:`harness.launcher.Server` uses.

A server leads its own process group, and a signal to stop it goes to that group, so
that what its app started (a ``subprocess.Popen`` at import, a :mod:`multiprocessing`
child) ends with it; when a server has exited, what is left in its group is killed before
the server is reaped. A reaped server's pid is never signalled: the warm parent, which
reaps the servers it forked, signals them on the harness's behalf.

A server is started cold, by ``Popen`` as before, when the warm start cannot give it what
a cold start would: the reason is the first line of its log. That is when its environment
sets a variable the interpreter or the dynamic loader reads only as a process starts
(``PYTHONPATH``, ``LD_PRELOAD``...) otherwise than the warm parent's, or when the warm
parent has died or does not answer.

Not :mod:`multiprocessing`'s forkserver: its children re-import the parent's ``__main__``
(the ``harness`` script imports the harness's command line, about 0.1 s each) and hold the pipe whose
end tells it that its parent died.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

from harness.files import writing
from harness.interpreter import server_environment, server_path
from harness.server.forkserver import EXITED, STARTED, die_with_parent, signal_group

# Imported in the warm parent: the frameworks of both stacks (those missing are skipped)
# and the harness's server-side modules. Never an app: it is imported in each child.
PRELOAD = (
    "uvicorn.main",
    "uvicorn.lifespan.on",
    "uvicorn.loops.auto",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.websockets.auto",
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic.v1",  # the built-in builds import it, through FastAPI's or their own use of Pydantic
    "peewee",
    "anyio",
    "harness.server.probe",
)
FORK_TIMEOUT = 30.0  # seconds for the warm parent to answer, its imports included on a loaded machine
LOST_EXIT_CODE = 255  # a server whose warm parent died first: its exit code went with the parent
STARTUP_VARIABLES = ("PYTHON", "LD_")  # prefixes of what only a process's start reads

_STOP_TIMEOUT = 5.0
_EXIT_POLL = 0.02  # seconds between looks at a server whose exit nothing announces (cold, or its warm parent died)


class ServerProcess(Protocol):
    """What the launcher uses of a server's process: ``subprocess.Popen`` has it, and so has ForkedProcess."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class WarmStartError(Exception):
    """The warm parent cannot start this server; the message says why."""


class ForkServer:
    """The warm parent of this process's servers, from its start to its stop."""

    def __init__(self, preload: Sequence[str] = PRELOAD, *, python: str | None = None) -> None:
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if python is None:
            command = [sys.executable, "-P", "-m", "harness.server.forkserver", *preload]  # -P: not the cwd first
            cwd = None
        else:  # a build's own interpreter, on the harness's server code alone (any Python, -P or not)
            self.env = server_environment(self.env)
            command = [python, "-m", "harness.server.forkserver", *preload]
            cwd = server_path()
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,  # the harness, not the terminal's Ctrl-C, stops it
            preexec_fn=die_with_parent,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._requests: IO[bytes] = self.process.stdin
        self._answers_pipe: IO[bytes] = self.process.stdout
        self._answers = self._answers_pipe.fileno()
        os.set_blocking(self._answers, False)
        self._unread = b""
        self._started: list[int] = []
        self._exits: dict[int, int] = {}
        self._lock = threading.Lock()
        self.gone = ""  # why it can start no more servers, once it cannot

    def fork(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path) -> ForkedProcess:
        """A child that runs ``python -m uvicorn ARGS`` in ``cwd`` with ``env``, its output appended to ``log_path``."""
        reason = self.gone or _startup_difference(env, self.env)
        if reason:
            raise WarmStartError(reason)
        request = {"args": list(args), "cwd": str(cwd), "env": dict(env), "log": str(log_path)}
        with self._lock:
            try:
                self._requests.write(json.dumps(request).encode() + b"\n")
                self._requests.flush()
            except OSError:
                self._read(0)  # notes why it is gone
                raise WarmStartError(self.gone or "the warm parent does not take requests") from None
            deadline = time.monotonic() + FORK_TIMEOUT
            while not self._started and not self.gone and time.monotonic() < deadline:
                self._read(deadline - time.monotonic())
            if not self._started:
                reason = self.gone or f"the warm parent did not answer within {FORK_TIMEOUT:g} s"
                self.stop()  # a late answer would be a server no one stops
                raise WarmStartError(reason)
            return ForkedProcess(self, self._started.pop(0))

    def signal_group(self, pid: int, sig: signal.Signals) -> None:
        """Have the warm parent send ``sig`` to child ``pid``'s process group, unless it has reaped ``pid``."""
        with self._lock:
            if not self.gone:
                try:
                    self._requests.write(json.dumps({"signal": int(sig), "pid": pid}).encode() + b"\n")
                    self._requests.flush()
                    return
                except OSError:
                    self._read(0)  # notes why it is gone
        # Gone: nothing reaps its servers now but init; one that still runs has its pid to itself.
        if _exists(pid):
            signal_group(pid, sig)

    def exit_code(self, pid: int, timeout: float = 0.0) -> int | None:
        """The exit code of child ``pid``, waiting up to ``timeout`` for it; None while it runs."""
        with self._lock:
            if pid not in self._exits and not self.gone:
                self._read(timeout)
            if pid in self._exits:
                return self._exits[pid]
        if self.gone:  # Linux sent it SIGTERM when its parent died; no one can tell how it ended
            if _exists(pid):
                time.sleep(min(timeout, _EXIT_POLL))
                return None
            return LOST_EXIT_CODE
        return None

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """End the warm parent: no more requests, then SIGKILL if it outlives ``timeout``; it ends its servers."""
        self.gone = self.gone or "the warm parent was stopped"
        with contextlib.suppress(OSError):
            self._requests.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # its servers get their SIGTERM from Linux all the same
            self.process.wait()
        self._answers_pipe.close()

    def _read(self, timeout: float) -> None:
        """Take in what the warm parent said, waiting up to ``timeout`` for something."""
        if not select.select([self._answers], [], [], max(0.0, timeout))[0]:
            return
        try:
            chunk = os.read(self._answers, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.gone = f"the warm parent exited with code {self.process.wait()}"
            return
        self._unread += chunk
        *lines, self._unread = self._unread.split(b"\n")
        for line in lines:
            kind, *numbers = line.decode().split()
            if kind == STARTED:
                self._started.append(int(numbers[0]))
            elif kind == EXITED:
                self._exits[int(numbers[0])] = int(numbers[1])


class ForkedProcess:
    """A server forked by the warm parent, handled as ``subprocess.Popen`` handles its child."""

    def __init__(self, parent: ForkServer, pid: int) -> None:
        self._parent = parent
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self._exit_code(0.0)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = FORK_TIMEOUT if deadline is None else deadline - time.monotonic()
            code = self._exit_code(max(0.0, remaining))
            if code is not None:
                return code
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"server {self.pid}", timeout or 0.0)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _exit_code(self, timeout: float) -> int | None:
        if self.returncode is None:
            self.returncode = self._parent.exit_code(self.pid, timeout)
        return self.returncode

    def _signal(self, sig: signal.Signals) -> None:
        if self.poll() is None:
            self._parent.signal_group(self.pid, sig)


class ColdProcess:
    """A server started cold: its ``subprocess.Popen``, with what it left in its group killed as it is reaped."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid

    def poll(self) -> int | None:
        if self._popen.returncode is None and _has_exited(self.pid):
            signal_group(self.pid, signal.SIGKILL)  # not reaped yet: the group's id is still the server's
            self._popen.wait()
        return self._popen.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"server {self.pid}", timeout or 0.0)
            time.sleep(_EXIT_POLL if deadline is None else max(0.0, min(_EXIT_POLL, deadline - time.monotonic())))
        return code

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.poll() is None:  # only this handle reaps it: not reaped, so the pid is still the server's
            signal_group(self.pid, sig)


def start_uvicorn(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path, python: str | None = None
) -> ServerProcess:
    """``python -m uvicorn ARGS`` in ``cwd`` with ``env``, its output in ``log_path``, in a session of its own.

    ``python`` is the build's own interpreter, if it has one, else the harness's. Forked from
    that interpreter's warm parent when it can be, else started cold, the reason first in its log.
    """
    with writing(log_path):
        log_path.write_bytes(b"")  # there at once: the harness reads it for the "running" line
    try:
        return warm_parent(python).fork(args, cwd=cwd, env=env, log_path=log_path)
    except WarmStartError as exc:
        reason = str(exc)
    with log_path.open("ab") as log:
        log.write(f"harness: started cold: {reason}\n".encode())
        log.flush()
        popen = subprocess.Popen(
            [python or sys.executable, "-m", "uvicorn", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the harness, not the terminal's Ctrl-C, stops it; its group is its own
            preexec_fn=die_with_parent,
        )
    return ColdProcess(popen)


_warm_parents: dict[str | None, ForkServer] = {}  # by interpreter: None is the harness's own
_warm_parent_lock = threading.Lock()


def warm_parent(python: str | None = None) -> ForkServer:
    """The warm parent of this process's servers on ``python`` (None: the harness's own interpreter), started
    on first use (it imports while the harness sets up) and stopped at exit."""
    with _warm_parent_lock:
        if python not in _warm_parents:
            try:
                _warm_parents[python] = parent = ForkServer(python=python)
            except OSError as exc:
                raise WarmStartError(f"the warm parent did not start: {exc}") from None
            atexit.register(_stop_at_exit, parent)
        return _warm_parents[python]


def warm_up(python: str | None = None) -> None:
    """Start the warm parent now, so that it imports while the harness sets up; if it cannot, servers start cold."""
    with contextlib.suppress(WarmStartError):
        warm_parent(python)


def _stop_at_exit(parent: ForkServer) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness is ending: a Ctrl-C now would print a traceback
    parent.stop()


def _startup_difference(env: Mapping[str, str], parent_env: Mapping[str, str]) -> str:
    """Why ``env`` needs a process of its own from the start: what it sets otherwise than the warm parent's."""
    differ = sorted(
        name
        for name in {*env, *parent_env}
        if name.startswith(STARTUP_VARIABLES) and env.get(name) != parent_env.get(name)
    )
    if not differ:
        return ""
    return f"its environment sets {', '.join(differ)}, read only as a process starts, otherwise than the warm parent's"


def _has_exited(pid: int) -> bool:
    """Whether child ``pid`` has exited, looked at without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _exists(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie does not (if nothing reaps it, as in a container without an init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
