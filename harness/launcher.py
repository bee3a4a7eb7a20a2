"""Start and stop one uvicorn process per variant per trial.

Each server gets its own folder (log, probe events, trace, and ``tmp/``, the variant's
``{tmp}``, where its ``{database_url}`` is on SQLite; on PostgreSQL the pipeline gives it a
fresh database of its own), binds 127.0.0.1 on port 0 and is listening when uvicorn logs
``Uvicorn running on http://127.0.0.1:PORT``: no port race, and the real port is read
from that line (only an app that must know its port, ``{port}`` in its env, is given a
free one up front). A variant with a ``ready`` path is ready once that path answers 2xx.
The variant's ``env_file`` and ``env`` are added to the server's environment, ``app_dir``
goes first on its import path. Output goes to a file, so a full pipe can never stall a
server. The process is forked from a warm parent that has already imported the
frameworks, or started cold when it cannot be (:func:`harness.forkserver.start_uvicorn`).
:meth:`Server.stop` ends the process by escalation
(terminate, wait, kill) and is safe to call more than once, also after a Ctrl-C cut an
earlier call short. Servers listen on loopback only unless the user asks otherwise
(:func:`check_host`).
"""

from __future__ import annotations

import enum
import functools
import inspect
import ipaddress
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import dotenv
import httpx

from harness.errors import AppError, ConfigError, LaunchError, UsageError
from harness.files import writing
from harness.forkserver import ServerProcess, start_uvicorn
from harness.interpreter import checked_interpreter, server_environment
from harness.settings import DEFAULT_HOST, DEFAULT_START_TIMEOUT
from harness.trace import TRACE_FILE
from harness.urls import database_parts, display_url, hide_secrets
from harness.variant import Database, Variant

if TYPE_CHECKING:
    from harness.postgres import Database as PostgresDatabase

DEFAULT_STOP_TIMEOUT = 5.0
LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 8192  # at most this much of a log's end is read for its tail: 20 lines of 400 bytes

SQLITE_FILE = "app.sqlite3"  # a build's {database_url} on SQLite, in its {tmp}
EVENTS_FILE = "events.jsonl"  # the probe writes each exception that left the app
STARTUP_FAILURE_FILE = "startup-failure.txt"  # the probe writes why the app did not import

_POLL_INTERVAL = 0.02
_READY_POLL_INTERVAL = 0.1
_READY_REQUEST_TIMEOUT = 5.0
_LOG_CHUNK = 1 << 20  # bytes of the log read at a time while looking for uvicorn's "running on" line


class ServerState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"


class Server:
    """A uvicorn process serving one variant, from start to stop."""

    def __init__(
        self,
        variant: Variant,
        directory: Path,
        *,
        time_scale: float,
        host: str = DEFAULT_HOST,
        trace: bool = True,
        database: PostgresDatabase | None = None,
        explore: bool = False,
    ) -> None:
        self.variant = variant
        self.host = host
        self.directory = directory = directory.resolve()  # the server runs with it as its cwd
        self.log_path = directory / "server.log"
        self.events_path = directory / EVENTS_FILE
        self.startup_failure_path = directory / STARTUP_FAILURE_FILE
        self.tmp_dir = directory / "tmp"  # the variant's {tmp}: its database goes here
        self.trace_path = directory / TRACE_FILE if trace else None
        self.port: int | None = _free_port(host) if variant.uses_port else None
        self._asked_to_stop = False
        self._listening = False  # uvicorn said it is running: from then on a stop lets requests finish
        self._ready_seen = ""  # what the ready path last answered, for the error if it never says 2xx
        self._log_read = 0  # how far the log was looked through for the "running on" line
        self._log_unmatched = b""  # its last bytes: the start of that line, maybe
        self.state = ServerState.STARTING
        self._ready = re.compile(rb"Uvicorn running on " + re.escape(self._url_base.encode()) + rb":(\d+)")
        with writing(self.tmp_dir):  # a full disk: the run stops, in one line
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        # A database made for it on PostgreSQL (by the pipeline), else a SQLite file of its own.
        self.database_name = database.name if database else None
        self.database_url = database.url if database else f"sqlite:///{self.tmp_dir / SQLITE_FILE}"
        placeholders = {
            "tmp": str(self.tmp_dir),
            "port": str(self.port or 0),
            "time_scale": repr(time_scale),
            "database_url": self.database_url,
            **database_parts(self.database_url),
        }
        own_env = {
            **_env_file(variant),
            **{key: value.format_map(placeholders) for key, value in variant.env.items()},
        }
        env = {
            **os.environ,
            **own_env,
            "HARNESS_PROBE_APP": variant.app,
            "HARNESS_PROBE_FACTORY": "1" if variant.factory else "",
            "HARNESS_PROBE_EVENTS": str(self.events_path),
            "HARNESS_PROBE_TRACE": str(self.trace_path or ""),
            "HARNESS_PROBE_STARTUP_FAILURE": str(self.startup_failure_path),
            "HARNESS_PROBE_EXPLORE": "1" if explore else "",  # the harness, not anyio, schedules the thread pool
            "PYTHONUNBUFFERED": "1",
        }
        if variant.python:
            env = server_environment(env, own_env.get("PYTHONPATH"))
        args = [
            "harness.server.probe:create_app",
            "--factory",
            "--host",
            host,
            "--port",
            str(self.port or 0),
            *(("--app-dir", variant.app_dir) if variant.app_dir else ()),
            *_graceful_shutdown_options(variant),
        ]
        self.process: ServerProcess = start_uvicorn(
            args, cwd=directory, env=env, log_path=self.log_path, python=variant.python
        )

    @property
    def database(self) -> Database:
        """What the server's app runs on: PostgreSQL if a database was made for it there."""
        return "sqlite" if self.database_name is None else "postgres"

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
        """Wait for uvicorn's "running on" line, then for the variant's ready path to answer 2xx.

        A server that exits first raises LaunchError, or AppError when its app did not
        import; one whose ready path never answers 2xx raises AppError.
        """
        with anyio.move_on_after(timeout):
            while self.process.poll() is None and not self._listening:
                port = self._logged_port()
                if port is not None:
                    self.port, self._listening = port, True
                else:
                    await anyio.sleep(_POLL_INTERVAL)
            if self.process.poll() is None and (self.variant.ready is None or await self._answers_ready()):
                self.state = ServerState.RUNNING
                return
        exit_code = self.process.poll()
        self.stop()
        # Read only from a server that exited: one still loading its app at the timeout has a
        # failure written in advance (harness.server.probe.create_app), which did not happen.
        failure = _startup_failure(self.startup_failure_path) if exit_code is not None else ""
        if failure:
            raise AppError(f"variant {self.variant.name!r}: {failure}", variant=self.variant.name)
        if self._listening and exit_code is None:
            raise AppError(
                f"variant {self.variant.name!r}: its ready path {self.variant.ready} did not answer 2xx within "
                f"{timeout:g} s ({self._ready_seen or 'no answer'})",
                variant=self.variant.name,
                log_tail=self.log_tail(),
            )
        problem = (
            f"did not start within {timeout:g} s"
            if exit_code is None
            else f"exited with code {exit_code} before it was ready"
        )
        raise LaunchError(
            f"variant {self.variant.name!r} {problem}", variant=self.variant.name, log_tail=self.log_tail()
        )

    def _logged_port(self) -> int | None:
        """The port in uvicorn's "running on" line, if it is in the log yet; each byte of the log is read once.

        An app may print a line of any length as it imports: the log is read a chunk at a time.
        """
        with self.log_path.open("rb") as log:
            log.seek(self._log_read)
            while chunk := log.read(_LOG_CHUNK):
                self._log_read += len(chunk)
                text = self._log_unmatched + chunk
                match = self._ready.search(text)
                if match:
                    return int(match.group(1))
                self._log_unmatched = text[-len(self._ready.pattern) :]
        return None

    async def _answers_ready(self) -> bool:
        """Poll the variant's ready path until it answers 2xx (True) or the server exits (False)."""
        async with httpx.AsyncClient(base_url=self.base_url, trust_env=False, timeout=_READY_REQUEST_TIMEOUT) as client:
            while self.process.poll() is None:
                try:
                    response = await client.get(self.variant.ready or "/")
                except httpx.HTTPError as exc:
                    self._ready_seen = f"last try: {type(exc).__name__}"
                else:
                    if response.is_success:
                        return True
                    self._ready_seen = f"last answer: HTTP {response.status_code}"
                await anyio.sleep(_READY_POLL_INTERVAL)
        return False

    @property
    def stop_timeout(self) -> float:
        """How long a stop waits before it kills: none for a server that never started listening.

        It has no request to let finish, and uvicorn ignores SIGTERM while its app starts up.
        """
        return DEFAULT_STOP_TIMEOUT if self._listening else 0.0

    def stop(self, timeout: float | None = None) -> None:
        """Terminate, wait up to ``timeout`` (default: :attr:`stop_timeout`), kill. STOPPED is set once it is reaped."""
        self.ask_to_stop()
        try:
            self.process.wait(self.stop_timeout if timeout is None else timeout)
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
        return log_tail(self.log_path, lines)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, size: int = LOG_TAIL_BYTES) -> str:
    """The last ``lines`` lines of the log at ``path``, from no more than its last ``size`` bytes; "" if unreadable.

    An app's log can hold a line of any length, and the tail goes into the records and onto
    the terminal: only the end of the file is read, and a line that read cut says so.
    """
    try:
        with path.open("rb") as log:
            start = max(0, log.seek(0, os.SEEK_END) - size - 1)  # and the byte before: does a line start there?
            log.seek(start)
            data = log.read()
    except OSError:
        return ""
    cut = start > 0 and not data.startswith(b"\n")
    kept = data[1:] if start > 0 else data
    text = kept.decode("utf-8", errors="replace").splitlines()
    shown = text[-lines:]
    if cut and len(shown) == len(text):  # the cut line is among those shown
        shown[0] = f"[cut: the log's first {start + 1:,} bytes not shown] ...{shown[0]}"
    return "\n".join(shown)


def stop_all(servers: Iterable[Server], timeout: float | None = None) -> None:
    """Stop servers together: all are asked at once, so the lot takes one timeout, not one each.

    Each waits its own :attr:`Server.stop_timeout`, or ``timeout``, from the moment all were asked.
    """
    servers = list(servers)
    for server in servers:
        server.ask_to_stop()
    asked = time.monotonic()
    for server in servers:
        allowed = server.stop_timeout if timeout is None else timeout
        server.stop(max(0.0, asked + allowed - time.monotonic()))


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


def _free_port(host: str) -> int:
    """A port free now, for an app that must know its port before it starts ({port} in its env).

    Another process may take it before uvicorn binds it; uvicorn then exits with "address
    already in use" in its log, and the trial records that.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _env_file(variant: Variant) -> dict[str, str]:
    if variant.env_file is None:
        return {}
    try:
        values = dotenv.dotenv_values(variant.env_file)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"variant {variant.name!r}: cannot read env_file {variant.env_file}: {exc}") from None
    return {key: value for key, value in values.items() if value is not None}


def _startup_failure(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace", newline="") as failure:  # a "\r" in it stays one
            return failure.read().strip()
    except OSError:
        return ""


def _graceful_shutdown_options(variant: Variant) -> tuple[str, ...]:
    """Give in-flight requests 2 s after SIGTERM, where uvicorn can bound that (not 0.14, legacy stack).

    Without it uvicorn waits for every open request; :meth:`Server.stop` then kills at its timeout.
    """
    if variant.python:
        graceful = checked_interpreter(variant.python, variant=variant.name).graceful_shutdown
    else:
        graceful = _own_uvicorn_is_graceful()
    return ("--timeout-graceful-shutdown", "2") if graceful else ()


@functools.cache
def _own_uvicorn_is_graceful() -> bool:
    import uvicorn  # the servers' uvicorn, unless a build has its own interpreter: they run on this one

    return "timeout_graceful_shutdown" in inspect.signature(uvicorn.Config).parameters


def check_url(url: str, *, allow_remote: bool) -> str:
    """The URL of a server the user runs; only one on this machine unless the user allows more."""
    shown = display_url(url)  # the URL may hold a password: every message shows it without
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UsageError(f"--url: not a URL: {shown!r} ({hide_secrets(str(exc), url)})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"--url: expected http://HOST:PORT or https://HOST:PORT, got {shown!r}")
    if not allow_remote and not _is_loopback(parsed.host):
        raise UsageError(
            f"--url {shown} is not on this machine; the harness sends it real concurrent load: add --allow-remote "
            "if that server is yours to test"
        )
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def check_answers(url: str, timeout: float = DEFAULT_START_TIMEOUT) -> None:
    """A usage error unless something answers HTTP at ``url`` (any status will do) within ``timeout``."""
    try:
        httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise UsageError(
            f"--url {display_url(url)}: nothing answers there ({type(exc).__name__}: {hide_secrets(str(exc), url)}); "
            "is the server up?"
        ) from None
