"""A real PostgreSQL server for a harness run: the harness's own, or one the user runs.

An app on PostgreSQL fails under concurrency in ways SQLite never shows: it runs out of
connections, or leaks one per worker thread. So each trial of each build gets a fresh
database of its own on a real server, and the harness counts the connections each build
opens and leaves open. :class:`PostgresServer` is that server, of one of two kinds:

- ``PostgresServer.start()``: the harness's own, for the run. Debian's ``postgresql``
  package's ``initdb`` and ``postgres`` (:func:`find_binaries`; ``tools/install-postgresql``
  installs them) make a throwaway cluster in a temporary folder, in memory when /dev/shm has
  room (:func:`folder_parent`): trust authentication, no fsync, listening on 127.0.0.1 at a
  free port and on a socket in that folder. A keeper process (:mod:`harness.postgres_keeper`)
  runs it, and stops it and removes the folder when the harness closes it or ends, however
  it ends: Ctrl-C, SIGTERM, SIGKILL. As root, which ``initdb`` and ``postgres`` refuse, they
  run as the ``postgres`` system user. ``initdb_seconds``, ``start_seconds`` and, once
  closed, ``stop_seconds`` are the keeper's timings.
- ``PostgresServer.connect(url)``: a server the user runs (``--database-url``), version 13 or
  later; the URL's database is only where the harness connects to create its own. It creates
  and drops only databases named ``DEFAULT_DATABASE_PREFIX`` + a random token of this object;
  a harness killed by SIGKILL leaves them behind, and their names say whose they are.

Either way :meth:`~PostgresServer.create_database` gives a :class:`Database` (its name, and
the URL an app connects with) copied from an empty template the server object made first,
one copy at a time whichever thread asks: PostgreSQL refuses to copy a template another
session is using. :meth:`~PostgresServer.drop_database` drops one; :meth:`~PostgresServer.close`
drops every one left on the user's server, or stops the harness's own.

Connections are counted in ``pg_stat_activity``, client backends only (the harness's own are
to another database): :meth:`~PostgresServer.open_connections` now; between
:meth:`~PostgresServer.watch` and :meth:`~PostgresServer.unwatch`, a series of
``(time.perf_counter(), count)`` samples taken every ``DEFAULT_SAMPLE_INTERVAL`` by one
thread with a connection of its own, one query for every database watched
(:meth:`~PostgresServer.samples` reads it so far). A build's peak is the largest count of its
series; its leaked connections, those still open ``harness.results.DEFAULT_LEAK_WAIT`` after its last response.

Whatever goes wrong is a :class:`~harness.errors.DatabaseError` (exit code 4) that says why
on one line (with the tail of the server's log if it did not start), and never shows a
password; ``display_url`` is the server's URL without it::

    with PostgresServer.start() as server:  # or PostgresServer.connect("postgresql://...")
        database = server.create_database("unpatched-1")
        server.watch(database.name)
        ...  # the app runs with database.url, the trial is fired
        samples = server.unwatch(database.name)
        server.drop_database(database.name)
"""

from __future__ import annotations

import contextlib
import enum
import glob
import json
import os
import pwd
import re
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from harness.errors import DatabaseError
from harness.postgres_keeper import FOLDER_PREFIX
from harness.settings import DEFAULT_POSTGRES_MAX_CONNECTIONS, DEFAULT_POSTGRES_SUPERUSER_RESERVED
from harness.urls import display_url, hide_secrets

DEFAULT_DATABASE_PREFIX = "harness_"  # every database the harness makes starts with it
DEFAULT_SAMPLE_INTERVAL = 0.05  # seconds between two counts of the connections in pg_stat_activity
DEFAULT_START_TIMEOUT = 60.0  # seconds for initdb and the start together, on a loaded machine
DEFAULT_STOP_TIMEOUT = 5.0  # seconds for each step of the stop: fast shutdown, immediate shutdown, SIGKILL
DEFAULT_CONNECT_TIMEOUT = 10  # whole seconds libpq waits for a server to answer
DEFAULT_BINARIES = "/usr/lib/postgresql/*/bin"  # where Debian's packages put them, one folder per version
DEFAULT_SYSTEM_USER = "postgres"  # Debian's package creates it
DEFAULT_MEMORY_FOLDER = Path("/dev/shm")  # a tmpfs on Linux, if a small one in a container
DEFAULT_MEMORY_ROOM = 1 << 30  # bytes it must have free to hold a cluster (40 MB) and its databases (8 MB each)
# A throwaway server: nothing is kept after the run, so nothing is forced to disk. initdb picks 128 MB of
# buffers whatever the machine; 32 MB take 41 MB of shared memory at 100 connections (PostgreSQL 15's
# shared_memory_size). Its connection limits are a stock server's (start()'s max_connections).
DEFAULT_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
}
# The app connects to the harness's own server as APP_ROLE, not a superuser, so it meets a stock
# server's limits (DEFAULT_POSTGRES_MAX_CONNECTIONS, of which DEFAULT_POSTGRES_SUPERUSER_RESERVED for
# superusers only) as it would in production: its 98th connection is refused with "remaining
# connection slots are reserved".
APP_ROLE = "app"
# The harness's own connections to a server it started: the one that creates databases and the
# sampler's. They are superusers' and are added to max_connections, so the app's room is a stock
# server's whatever the harness holds.
HARNESS_CONNECTIONS = 2
INSTALL_SCRIPT = "tools/install-postgresql"
MIN_SERVER_VERSION = 130000  # DROP DATABASE ... WITH (FORCE)
MAX_NAME_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1

# How the harness's own server copies the template: FILE_COPY copies its files and
# checkpoints, which costs little without fsync; WAL_LOG (15's default) writes every page to
# the WAL. An empty template in memory: 7.5 ms against 9.4 (benchmarks/postgres_server.py).
# The user's server keeps its default: there a checkpoint may cost much more.
_OWN_STRATEGY = "FILE_COPY"
_STRATEGY_VERSION = 150000
_KEEPER = "harness.postgres_keeper"
_KEEPER_GRACE = 10.0  # seconds for the keeper to remove the folder and exit, beyond the stop's own steps
_MAINTENANCE = "postgres"
_COUNT_QUERY = (
    "SELECT datname, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = ANY(%s) "
    "GROUP BY datname"
)


class ServerState(enum.Enum):
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True, kw_only=True)
class Database:
    """A fresh database for one trial of one build."""

    name: str
    url: str = field(repr=False)  # libpq's form, postgresql://USER[:PASSWORD]@HOST:PORT/NAME: it may hold a password


class PostgresServer:
    """A PostgreSQL server for one run, the harness's own or the user's; a context manager, closed once."""

    def __init__(
        self,
        url: str,
        *,
        keeper: _Keeper | None = None,
        timings: dict[str, Any] | None = None,
        max_connections: int | None = None,
        password: str | None = None,
    ) -> None:
        """Not to be called: :meth:`start` and :meth:`connect` make one."""
        self.owned = keeper is not None  # True: started by the harness, which stops it
        self.seed: Path | None = Path(timings["seed"]) if timings and timings.get("seed") else None
        # What the app may hold; None: the server's own max_connections (the user's), read by limits()
        self._max_connections = max_connections
        self._password = password  # of the harness's own server's roles, if not trust
        self.display_url = display_url(url)
        self.folder = keeper.folder if keeper else None  # the cluster's temporary folder
        self.keeper_pid = keeper.process.pid if keeper else None
        self.initdb_seconds: float | None = (timings or {}).get("initdb")
        self.start_seconds: float | None = (timings or {}).get("start")
        self.stop_seconds: float | None = None  # once closed
        self.state = ServerState.RUNNING
        self._url = url
        self._keeper = keeper
        self._stem = f"{DEFAULT_DATABASE_PREFIX}{secrets.token_hex(4)}"
        self._template = f"{self._stem}_template"
        self._created: list[str] = []  # the template first; a name goes in before its CREATE is sent
        self._count = 0
        self._lock = threading.Lock()  # one statement at a time on the one connection, and one copy at a time
        self._connection: Connection | None = None
        self._strategy: sql.Composable = sql.SQL("")
        self._owner: sql.Composable = sql.SQL("")  # on the harness's own server, the app's role owns its databases
        self._sampler = _Sampler(self._connect, DEFAULT_SAMPLE_INTERVAL)

    @classmethod
    def start(
        cls,
        *,
        timeout: float = DEFAULT_START_TIMEOUT,
        password: str | None = None,
        binaries: Path | None = None,
        parent: Path | None = None,
        max_connections: int = DEFAULT_POSTGRES_MAX_CONNECTIONS,
        seed: Path | None = None,
        keep_seed: bool = False,
        prefix: str = FOLDER_PREFIX,
    ) -> PostgresServer:
        """Start the harness's own server: initdb, postgres, ready, the template made; DatabaseError if not.

        ``password``: scram-sha-256 authentication with that password for the superuser and
        the app's role instead of trust (for testing a wrong password). ``binaries``: the
        folder of initdb and postgres, by default :func:`find_binaries`'s. ``parent``: where
        the temporary folder goes, by default :func:`folder_parent`'s choice.
        ``max_connections``: the connections the app may open, the last
        ``DEFAULT_POSTGRES_SUPERUSER_RESERVED`` of them refused to it, as on a stock server (the
        harness's own come on top). ``seed``: another server's :attr:`seed`, copied instead
        of running initdb; ``keep_seed``: keep one, for the next servers of the run.
        ``prefix``: how the temporary folder's name starts.
        """
        binaries = binaries or find_binaries()
        missing = [name for name in ("initdb", "postgres") if not (binaries / name).is_file()]
        if missing:
            raise DatabaseError(f"no {' nor '.join(missing)} in {binaries}: {_install_hint()}")
        keeper = _Keeper(
            {
                "binaries": str(binaries),
                "parent": str(parent or folder_parent()),
                "prefix": prefix,
                "user": _system_user(),
                "password": password,
                "settings": {
                    **DEFAULT_SETTINGS,
                    "max_connections": str(max_connections + HARNESS_CONNECTIONS),
                    "superuser_reserved_connections": str(DEFAULT_POSTGRES_SUPERUSER_RESERVED),
                },
                "seed": str(seed) if seed else None,
                "keep_seed": keep_seed,
                "timeout": timeout,
                "stop_timeout": DEFAULT_STOP_TIMEOUT,
            }
        )
        try:
            ready = keeper.wait_ready(timeout + _KEEPER_GRACE)
        except BaseException:
            keeper.close(DEFAULT_STOP_TIMEOUT)
            raise
        user = f"postgres:{quote(password, safe='')}" if password is not None else "postgres"
        url = f"postgresql://{user}@127.0.0.1:{ready['ready']}/{_MAINTENANCE}"
        server = cls(url, keeper=keeper, timings=ready, max_connections=max_connections, password=password)
        server._open()
        return server

    @classmethod
    def connect(cls, url: str) -> PostgresServer:
        """The user's server at ``url`` (postgresql://...), checked to allow CREATE DATABASE; the template made."""
        if urlsplit(url).scheme not in ("postgresql", "postgres"):
            raise DatabaseError(
                f"--database-url: expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE, got {display_url(url)}"
            )
        server = cls(url)
        server._open()
        return server

    def create_database(self, label: str) -> Database:
        """A fresh database copied from the template, named after ``label``; safe from several threads at once."""
        with self._lock:
            self._check_running()
            self._count += 1
            name = database_name(self._stem, self._count, label)
            self._created.append(name)  # before CREATE: a Ctrl-C during it leaves a database close() drops
            self._execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}{}{}").format(
                    sql.Identifier(name), sql.Identifier(self._template), self._owner, self._strategy
                )
            )
        return Database(name=name, url=self._database_url(name))

    def drop_database(self, name: str) -> None:
        """Drop one database this object created, closing the connections still open to it."""
        with self._lock:
            self._check_running()
            if name not in self._created or name == self._template:
                raise ValueError(f"{name!r} is not a database this server object created")
            self._drop(name)

    def open_connections(self, name: str) -> int:
        """The client connections open to database ``name`` now (the harness's own are to another)."""
        with self._lock:
            self._check_running()
            counts = dict(self._execute(sql.SQL(_COUNT_QUERY), ([name],)))
        return int(counts.get(name, 0))

    def limits(self) -> dict[str, str]:
        """The connection limits the app meets here, as the run's environment records them."""
        with self._lock:
            self._check_running()
            rows = self._execute(
                sql.SQL(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('max_connections', 'superuser_reserved_connections', 'server_version')"
                )
            )
        settings = dict(rows)
        if self._max_connections is not None:  # the harness's own connections come on top
            settings["max_connections"] = str(self._max_connections)
        return {f"postgres_{name}": settings[name] for name in sorted(settings)}

    def watch(self, name: str) -> None:
        """Count the connections to database ``name`` every ``DEFAULT_SAMPLE_INTERVAL`` from now on."""
        self._check_running()
        self._sampler.watch(name)

    def samples(self, name: str) -> list[tuple[float, int]]:
        """The samples of a watched database so far, ``(time.perf_counter(), open connections)`` each."""
        return self._sampler.samples(name)

    def unwatch(self, name: str) -> list[tuple[float, int]]:
        """Stop counting for database ``name``; its samples."""
        return self._sampler.unwatch(name)

    def close(self) -> None:
        """Drop the databases made on the user's server, or stop the harness's own and see its folder removed.

        Safe to call again, also after a Ctrl-C cut an earlier call short; CLOSED once done.
        A DatabaseError at the end names what could not be cleaned up.
        """
        if self.state is ServerState.CLOSED:
            return
        self._sampler.close()
        problems = []
        if self._keeper is None:
            for name in reversed(list(self._created)):  # the template last: the others are copies of it
                try:
                    with self._lock:
                        self._drop(name)
                except DatabaseError as exc:  # the others would most likely fail the same way, one timeout each
                    problems.append(f"{', '.join(self._created)} not dropped: {exc.message}")
                    break
        with self._lock:
            if self._connection is not None:
                self._connection.close()
        if self._keeper is not None:
            said = self._keeper.close(DEFAULT_STOP_TIMEOUT)
            self.stop_seconds = said.get("stopped", self.stop_seconds)
            problems += said.get("errors", [])
            if self.folder is not None and self.folder.exists():  # the keeper was killed: Linux ended postgres
                shutil.rmtree(self.folder, ignore_errors=True)
                if self.folder.exists():
                    problems.append(f"its folder {self.folder} could not be removed")
        self.state = ServerState.CLOSED
        if problems:
            raise DatabaseError(f"PostgreSQL at {self.display_url}: not all cleaned up: {'; '.join(problems)}")

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _open(self) -> None:
        """Check the server and make the template; closed again, with a DatabaseError, if that fails."""
        try:
            with self._lock:
                version = int(self._execute(sql.SQL("SHOW server_version_num"))[0][0])
                if version < MIN_SERVER_VERSION:
                    raise DatabaseError(
                        f"PostgreSQL at {self.display_url} is version {version // 10000}; the harness needs 13 or later"
                    )
                user, allowed = self._execute(
                    sql.SQL("SELECT current_user, rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user")
                )[0]
                if not allowed:
                    raise DatabaseError(
                        f"PostgreSQL at {self.display_url}: the role {user} may not create databases, which the "
                        f"harness needs to give each trial its own (ALTER ROLE {user} CREATEDB)"
                    )
                if self.owned and version >= _STRATEGY_VERSION:
                    self._strategy = sql.SQL(" STRATEGY {}").format(sql.SQL(_OWN_STRATEGY))
                if self.owned:  # a fresh cluster, or a copy of one never started: the role is not there yet
                    password = (
                        sql.SQL(" PASSWORD {}").format(sql.Literal(self._password)) if self._password else sql.SQL("")
                    )
                    self._execute(
                        sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER{}").format(sql.Identifier(APP_ROLE), password)
                    )
                    self._owner = sql.SQL(" OWNER {}").format(sql.Identifier(APP_ROLE))
                self._created.append(self._template)
                self._execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(self._template)))
        except BaseException:
            with contextlib.suppress(DatabaseError):
                self.close()
            raise

    def _check_running(self) -> None:
        if self.state is ServerState.CLOSED:
            raise RuntimeError(f"the PostgreSQL server at {self.display_url} was closed")

    def _drop(self, name: str) -> None:
        """DROP DATABASE, with the lock held."""
        self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self._created.remove(name)

    def _execute(self, statement: sql.Composable, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on the harness's connection (made again if it broke), with the lock held; its rows."""
        if self._connection is None or self._connection.closed:
            self._connection = self._connect()
        try:
            with self._connection.cursor() as cursor:
                cursor.execute(statement, parameters or None)  # None: a '%' in a literal stays one
                return cursor.fetchall() if cursor.description else []
        except psycopg2.Error as exc:
            raise DatabaseError(f"PostgreSQL at {self.display_url}: {self._reason(exc)}") from None

    def _connect(self) -> Connection:
        try:
            connection = psycopg2.connect(self._url, connect_timeout=DEFAULT_CONNECT_TIMEOUT)
        except psycopg2.Error as exc:
            raise DatabaseError(f"cannot connect to PostgreSQL at {self.display_url}: {self._reason(exc)}") from None
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction; each count sees now
        return connection

    def _reason(self, exc: psycopg2.Error) -> str:
        """libpq's message on one line, without what the user cannot act on, nor any password."""
        text = str(exc).strip()
        if text.startswith("connection to server"):  # at "host", port N failed: what the URL already says
            text = text.partition(" failed: ")[2] or text
        lines = (" ".join(line.replace("FATAL:", "").split()) for line in text.splitlines())
        text = "; ".join(line for line in lines if line)
        return hide_secrets(text, self._url) or type(exc).__name__

    def _database_url(self, name: str) -> str:
        """The URL the app connects with: on the harness's own server as APP_ROLE, else as the user's URL says."""
        parts = urlsplit(self._url)
        netloc = parts.netloc
        if self.owned:
            password = f":{quote(self._password, safe='')}" if self._password is not None else ""
            netloc = f"{APP_ROLE}{password}@{netloc.rpartition('@')[2]}"
        return urlunsplit(("postgresql", netloc, "/" + name, parts.query, ""))


class _Sampler:
    """One thread with a connection of its own that counts the connections of every watched database each tick.

    Started at the first :meth:`watch`, it idles while nothing is watched and ends at :meth:`close`.
    """

    def __init__(self, connect: Callable[[], Connection], interval: float) -> None:
        self._connect = connect
        self._interval = interval
        self._samples: dict[str, list[tuple[float, int]]] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._error = ""

    def watch(self, name: str) -> None:
        with self._changed:
            self._raise_if_failed()
            self._samples[name] = []
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pg_stat_activity sampler", daemon=True)
                self._thread.start()
            self._changed.notify()  # the first count now, not at the next tick

    def samples(self, name: str) -> list[tuple[float, int]]:
        with self._changed:
            self._raise_if_failed()
            return list(self._samples[name])

    def unwatch(self, name: str) -> list[tuple[float, int]]:
        with self._changed:
            samples = self._samples.pop(name)
            self._raise_if_failed()
        return samples

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            connection = self._connect()
        except DatabaseError as exc:
            with self._changed:
                self._error = exc.message
            return
        try:
            with connection.cursor() as cursor:
                while self._wait_for_work():
                    with self._changed:
                        names = list(self._samples)
                    now = time.perf_counter()
                    cursor.execute(_COUNT_QUERY, (names,))  # an empty list, if all were unwatched meanwhile, is fine
                    counts = dict(cursor.fetchall())
                    with self._changed:
                        for name in names:
                            if name in self._samples:  # not unwatched meanwhile
                                self._samples[name].append((now, int(counts.get(name, 0))))
                        self._changed.wait(max(0.0, now + self._interval - time.perf_counter()))
        except psycopg2.Error as exc:
            with self._changed:
                self._error = f"counting connections failed: {' '.join(str(exc).split())}"
        finally:
            connection.close()

    def _wait_for_work(self) -> bool:
        """Wait until something is watched (True) or the sampler is closing (False)."""
        with self._changed:
            self._changed.wait_for(lambda: self._samples or self._closing)
            return not self._closing

    def _raise_if_failed(self) -> None:
        if self._error:
            raise DatabaseError(self._error)


class _Keeper:
    """The keeper process of the harness's own server (:mod:`harness.postgres_keeper`) and the pipes to it."""

    def __init__(self, config: dict[str, Any]) -> None:
        # Its stdin is the pipe whose end stops the server. The harness's end is not inherited by
        # what the harness starts later: Popen makes its pipes close-on-exec and closes other
        # descriptors in every child, the warm parent of the servers (harness.forkserver) included.
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", _KEEPER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # the terminal's Ctrl-C is the harness's; it then closes the pipe
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin = self.process.stdin
        self._stdout = self.process.stdout
        self._unread = b""
        self.folder: Path | None = None
        self._stdin.write(json.dumps(config).encode() + b"\n")  # the password goes here, not on a command line
        self._stdin.flush()

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """The keeper's ready message (port and timings); DatabaseError if it reports an error or says nothing."""
        deadline = time.monotonic() + timeout
        while (message := self._message(deadline)) is not None:
            if "folder" in message:
                self.folder = Path(message["folder"])
            elif "error" in message:
                raise DatabaseError(f"PostgreSQL did not start: {message['error']}")
            elif "ready" in message:
                return message
        if time.monotonic() >= deadline:
            raise DatabaseError(f"PostgreSQL did not start within {timeout:g} s")
        raise DatabaseError(f"PostgreSQL did not start: its keeper exited with code {self.process.wait()}")

    def close(self, stop_timeout: float) -> dict[str, Any]:
        """Close the pipe and wait for the keeper to stop the server and exit; what it said meanwhile."""
        with contextlib.suppress(OSError):
            self._stdin.close()
        said: dict[str, Any] = {"errors": []}
        deadline = time.monotonic() + 2 * stop_timeout + _KEEPER_GRACE
        while (message := self._message(deadline)) is not None:
            if "error" in message:
                said["errors"].append(message["error"])
            said.update({key: value for key, value in message.items() if key != "error"})
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()  # Linux then sends its server SIGQUIT
            self.process.wait()
            said["errors"].append(f"its keeper did not exit within {2 * stop_timeout + _KEEPER_GRACE:g} s")
        self._stdout.close()
        return said

    def _message(self, deadline: float) -> dict[str, Any] | None:
        """The keeper's next message; None at the end of its output or at the deadline."""
        while b"\n" not in self._unread:
            if self._stdout.closed:
                return None
            ready = select.select([self._stdout], [], [], max(0.0, deadline - time.monotonic()))[0]
            if not ready:
                return None
            chunk = os.read(self._stdout.fileno(), 65536)
            if not chunk:
                return None
            self._unread += chunk
        line, _, self._unread = self._unread.partition(b"\n")
        return dict(json.loads(line))


def find_binaries(path: str | None = None, pattern: str = DEFAULT_BINARIES) -> Path:
    """The folder of ``initdb`` and ``postgres``: where ``initdb`` on the PATH is, else the newest in ``pattern``.

    ``path`` stands for $PATH, ``pattern`` for the folders searched after it (a glob).
    """
    found = shutil.which("initdb", path=path)
    if found:
        for folder in (Path(found).resolve().parent, Path(found).parent):  # a link's target holds the rest
            if (folder / "postgres").is_file():
                return folder
    versions = [Path(folder) for folder in glob.glob(pattern) if Path(folder, "initdb").is_file()]
    if versions:
        return max(versions, key=lambda folder: [int(number) for number in re.findall(r"\d+", str(folder))])
    raise DatabaseError(f"PostgreSQL is not installed: no initdb on the PATH nor in {pattern}; {_install_hint()}")


def folder_parent() -> Path:
    """Where the harness's own cluster goes: in memory when there is room, else the temporary folder.

    A throwaway cluster has no reason to be on disk, where writing it back competes with
    everything else the machine writes: here initdb took 0.7 s there against 0.45 s in
    memory, and a copy of the template 40-120 ms against 6 ms (benchmarks/postgres_server.py).
    """
    with contextlib.suppress(OSError):
        stats = os.statvfs(DEFAULT_MEMORY_FOLDER)
        if stats.f_bavail * stats.f_frsize >= DEFAULT_MEMORY_ROOM and os.access(DEFAULT_MEMORY_FOLDER, os.W_OK):
            return DEFAULT_MEMORY_FOLDER
    return Path(tempfile.gettempdir())


def database_name(stem: str, number: int, label: str) -> str:
    """``STEM_NUMBER_LABEL``, the label in lowercase [a-z0-9_], cut to PostgreSQL's 63 bytes."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", label.lower()).strip("_")
    return f"{stem}_{number}_{cleaned}"[:MAX_NAME_BYTES].rstrip("_")


def _system_user() -> str | None:
    """Who runs initdb and postgres: this process, or the postgres system user when this is root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(DEFAULT_SYSTEM_USER)
    except KeyError:
        raise DatabaseError(
            f"the harness runs as root, as which initdb and postgres refuse to run, and there is no "
            f"{DEFAULT_SYSTEM_USER!r} system user to run them as: {_install_hint()}, or run the harness as another user"
        ) from None
    return DEFAULT_SYSTEM_USER


def _install_hint() -> str:
    return f"run {INSTALL_SCRIPT} (it installs Debian's postgresql package)"
