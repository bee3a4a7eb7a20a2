"""Start and stop one uvicorn process per variant per trial.

Each server gets its own folder (SQLite file, log, probe events, trace), binds 127.0.0.1 on
port 0 and is ready when uvicorn logs ``Uvicorn running on http://127.0.0.1:PORT``: no
port race, and the real port is read from that line. Output goes to a file, so a full
pipe can never stall a server. :meth:`Server.stop` ends the process by escalation
(terminate, wait, kill) and is safe to call more than once, also after a Ctrl-C cut an
earlier call short. Servers listen on loopback only unless the user asks otherwise
(:func:`check_host`).
"""

from __future__ import annotations

import ctypes
import enum
import functools
import inspect
import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import anyio

from harness.errors import LaunchError, UsageError
from harness.trace import TRACE_FILE
from harness.variant import Variant

DEFAULT_HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 5.0
LOG_TAIL_LINES = 20

_POLL_INTERVAL = 0.02


class ServerState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"


class Server:
    """A uvicorn process serving one variant, from start to stop."""

    def __init__(
        self, variant: Variant, directory: Path, *, time_scale: float, host: str = DEFAULT_HOST, trace: bool = True
    ) -> None:
        self.variant = variant
        self.host = host
        self.directory = directory = directory.resolve()  # the server runs with it as its cwd
        self.log_path = directory / "server.log"
        self.events_path = directory / "events.jsonl"
        self.database_path = directory / "app.sqlite3"
        self.trace_path = directory / TRACE_FILE if trace else None
        self.port: int | None = None
        self._asked_to_stop = False
        self.state = ServerState.STARTING
        self._ready = re.compile(rb"Uvicorn running on " + re.escape(self._url_base.encode()) + rb":(\d+)")
        directory.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "APP_VARIANTS_DATABASE": str(self.database_path),
            "APP_VARIANTS_TIME_SCALE": repr(time_scale),
            "HARNESS_APP": variant.app,
            "HARNESS_EVENTS": str(self.events_path),
            "HARNESS_TRACE": str(self.trace_path or ""),
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "harness.probe:create_app",
            "--factory",
            "--host",
            host,
            "--port",
            "0",
            *_graceful_shutdown_options(),
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the harness, not the terminal's Ctrl-C, stops it
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"{self._url_base}:{self.port}"

    @property
    def _url_base(self) -> str:
        return f"http://[{self.host}]" if ":" in self.host else f"http://{self.host}"

    async def wait_ready(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Wait for uvicorn's "running on" line; raise LaunchError if it exits or stays silent."""
        problem = f"did not start within {timeout:g} s"
        with anyio.move_on_after(timeout):
            while self.process.poll() is None:
                match = self._ready.search(self.log_path.read_bytes())
                if match:
                    self.port = int(match.group(1))
                    self.state = ServerState.RUNNING
                    return
                await anyio.sleep(_POLL_INTERVAL)
            problem = f"exited with code {self.process.returncode} before it was ready"
        self.stop()
        raise LaunchError(
            f"variant {self.variant.name!r} {problem}", variant=self.variant.name, log_tail=self.log_tail()
        )

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Terminate, wait up to ``timeout``, kill. STOPPED is set only once the process is reaped."""
        self.ask_to_stop()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.state = ServerState.STOPPED

    def ask_to_stop(self) -> None:
        """Send SIGTERM once, if the process still runs; uvicorn then shuts down gracefully."""
        if self.process.poll() is None and not self._asked_to_stop:
            self._asked_to_stop = True
            self.process.terminate()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def stop_all(servers: Iterable[Server], timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
    """Stop servers together: all are asked at once, so the lot takes one timeout, not one each."""
    servers = list(servers)
    for server in servers:
        server.ask_to_stop()
    deadline = time.monotonic() + timeout
    for server in servers:
        server.stop(max(0.0, deadline - time.monotonic()))


def check_host(host: str, *, allow_non_loopback: bool) -> str:
    """The address servers are to listen on; only loopback unless the user allows more."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"--host: expected an IP address, got {host!r}") from None
    if not address.is_loopback and not allow_non_loopback:
        raise UsageError(
            f"--host {host} would make the servers under test reachable from other machines; "
            "add --allow-non-loopback if that is what you want"
        )
    return str(address)


@functools.cache
def _graceful_shutdown_options() -> tuple[str, ...]:
    """Give in-flight requests 2 s after SIGTERM, where uvicorn can bound that (not 0.14, legacy stack).

    Without it uvicorn waits for every open request; :meth:`Server.stop` then kills at its timeout.
    """
    import uvicorn  # the servers' uvicorn: they run on this interpreter

    if "timeout_graceful_shutdown" in inspect.signature(uvicorn.Config).parameters:
        return ("--timeout-graceful-shutdown", "2")
    return ()


def _die_with_parent() -> None:
    """Ask Linux to end the server if the harness dies without stopping it (even by SIGKILL).

    Linux sends the signal when the forking *thread* exits: servers are started from the
    event loop's thread, which lives as long as the harness.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
