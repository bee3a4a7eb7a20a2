"""Where a run's databases are made on PostgreSQL: a stock server of the harness's own per app server, or the user's.

A stock PostgreSQL server lets 100 connections in, the last 3 for superusers only. Builds
and trials run side by side, and one server shared by all would let them fail each other
(the patched build alone holds about 100 under ``burst``), or else need a limit no real
server has. So the harness's own PostgreSQL is a pool of clusters
(:class:`~harness.postgres.PostgresServer`, each with its own keeper), each holding one app
server's database at a time, with a stock server's limits (``max_connections``). A cluster
is taken when a database is made for an app server and given back when it is dropped; a new
one is started only when none is free, so a run holds as many as it runs app servers at
once: a round's and the next round's, ``2 * jobs * builds`` at most. The first keeps a copy
of its cluster never started, and the others start from a copy of it: 60 ms against
initdb's 0.6 s. Each costs about 82 MB of memory (in /dev/shm: 41 MB of files, 41 MB of
shared memory) while the run lasts.

On the user's server (``--database-url``) every database is made on that one server, whose
limits are the user's: there the builds side by side share them, as the docs say.

:class:`PostgresPool` answers for the database it made, whichever cluster holds it, with
:class:`~harness.postgres.PostgresServer`'s methods::

    with PostgresPool.start(max_connections=100) as pool:  # or PostgresPool.connect(url)
        database = pool.create_database("patched-trial1")
        ...  # as with one PostgresServer
        pool.drop_database(database.name)
"""

from __future__ import annotations

import secrets
import threading
from types import TracebackType
from urllib.parse import urlsplit

from harness.errors import DatabaseError
from harness.postgres import APP_ROLE, DEFAULT_START_TIMEOUT, Database, PostgresServer
from harness.postgres_keeper import FOLDER_PREFIX
from harness.settings import DEFAULT_POSTGRES_MAX_CONNECTIONS


class PostgresPool:
    """The PostgreSQL servers of one run; a context manager, closed once."""

    def __init__(self, first: PostgresServer, *, max_connections: int | None, timeout: float, prefix: str) -> None:
        """Not to be called: :meth:`start` and :meth:`connect` make one."""
        self.owned = first.owned
        # Where the harness's own clusters' folders are: FOLDER/PREFIX*
        self.folders = f"{first.folder.parent / prefix}*" if first.folder else None
        self._first = first
        self._max_connections = max_connections
        self._timeout = timeout
        self._prefix = prefix
        self._servers = [first]  # the first last to close: the others were copied from its seed
        self._free = [first]
        self._holders: dict[str, PostgresServer] = {}  # a database's name: the server that holds it
        self._lock = threading.Lock()
        self.limits = first.limits()  # the connection limits each app server meets, for the run's environment

    @classmethod
    def start(
        cls, *, max_connections: int = DEFAULT_POSTGRES_MAX_CONNECTIONS, timeout: float = DEFAULT_START_TIMEOUT
    ) -> PostgresPool:
        """The harness's own: its first cluster started now (any failure to start shows here), the others as needed."""
        # The run's clusters' folders share a name: a user finds what a killed run left, a test what it ran.
        prefix = f"{FOLDER_PREFIX}{secrets.token_hex(4)}-"
        first = PostgresServer.start(timeout=timeout, max_connections=max_connections, keep_seed=True, prefix=prefix)
        try:
            return cls(first, max_connections=max_connections, timeout=timeout, prefix=prefix)
        except BaseException:
            first.close()
            raise

    @classmethod
    def connect(cls, url: str) -> PostgresPool:
        """The user's server at ``url``: every database on it."""
        server = PostgresServer.connect(url)
        try:
            return cls(server, max_connections=None, timeout=DEFAULT_START_TIMEOUT, prefix="")
        except BaseException:
            server.close()
            raise

    @property
    def display_url(self) -> str:
        """The user's server's URL without its password, or for the harness's own where its clusters listen."""
        if not self.owned:
            return self._first.display_url
        host = urlsplit(self._first.display_url).hostname
        return f"the harness's own, a cluster per app server in {self.folders} (postgresql://{APP_ROLE}@{host})"

    def create_database(self, label: str) -> Database:
        """A fresh database named after ``label``, on a cluster of its own on the harness's server."""
        server = self._take()
        try:
            database = server.create_database(label)
        except BaseException:
            self._give_back(server)
            raise
        with self._lock:
            self._holders[database.name] = server
        return database

    def drop_database(self, name: str) -> None:
        """Drop a database made here; its cluster is free for the next."""
        server = self._holder(name)
        server.drop_database(name)
        with self._lock:
            del self._holders[name]
        self._give_back(server)

    def open_connections(self, name: str) -> int:
        return self._holder(name).open_connections(name)

    def watch(self, name: str) -> None:
        self._holder(name).watch(name)

    def samples(self, name: str) -> list[tuple[float, int]]:
        return self._holder(name).samples(name)

    def unwatch(self, name: str) -> list[tuple[float, int]]:
        return self._holder(name).unwatch(name)

    def close(self) -> None:
        """Close every server, the first last; a DatabaseError names what could not be cleaned up. Safe to repeat."""
        problems = []
        for server in reversed(self._servers):
            try:
                server.close()
            except DatabaseError as exc:
                problems.append(exc.message)
        if problems:
            raise DatabaseError("; ".join(problems))

    def __enter__(self) -> PostgresPool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _take(self) -> PostgresServer:
        """A free cluster of the harness's own, started if none is; the user's one server for every database."""
        with self._lock:
            if not self.owned:
                return self._first
            if self._free:
                return self._free.pop()
        assert self._max_connections is not None and self._first.seed is not None
        server = PostgresServer.start(
            timeout=self._timeout, max_connections=self._max_connections, seed=self._first.seed, prefix=self._prefix
        )
        with self._lock:
            self._servers.append(server)
        return server

    def _give_back(self, server: PostgresServer) -> None:
        if self.owned:
            with self._lock:
                self._free.append(server)

    def _holder(self, name: str) -> PostgresServer:
        with self._lock:
            return self._holders[name]
