"""An append-only file written through a shared memory mapping: no system call per write.

The tracer writes an event for every checkout, query and session call of every request. A
``write(2)`` per event let go of the GIL each time, and the app's other threads (a SQLite
driver's, the thread pool's) took it in between: that was 40% of the trace's cost in a server of
an async SQLAlchemy app (docs/measurements.md). Bytes copied into a shared mapping of the file
are in the kernel's page cache at once, so a server killed mid-trial loses none it wrote, as with
``write(2)``. The file grows by ``CHUNK``, its blocks reserved first, so a full disk or a file
size limit is an ``OSError`` as the file grows, never a ``SIGBUS`` at a write. Past the last write
the file reads as NUL bytes: :meth:`MappedFile.close` cuts them off at a normal exit, but a server
that ends by a signal (uvicorn re-raises the SIGTERM it shut down on) or is killed keeps them, and
``harness.files.read_json_lines`` skips them as one line that is not JSON (in 0.1 ms).
"""

from __future__ import annotations

import mmap
import os

CHUNK = 1 << 20  # bytes the file grows by: about 7,000 trace events


class MappedFile:
    """Appends bytes to the file at ``path`` (created if need be); not thread-safe: the tracer writes under its lock."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._used = os.fstat(self._fd).st_size  # what is there already stays, as in a file opened with "a"
        self._size = self._used
        self._map: mmap.mmap | None = None

    def write(self, data: bytes) -> int:
        end = self._used + len(data)
        if self._map is None or end > self._size:
            self._map = self._grown(end)
        self._map[self._used : end] = data
        self._used = end
        return len(data)

    def _grown(self, end: int) -> mmap.mmap:
        """The file grown past ``end``, mapped whole."""
        size = (end // CHUNK + 1) * CHUNK
        os.posix_fallocate(self._fd, self._size, size - self._size)
        if self._map is not None:
            self._map.close()
        self._size = size
        return mmap.mmap(self._fd, size)

    def close(self) -> None:
        """Cut the file back to what was written, and close it."""
        if self._fd < 0:
            return
        if self._map is not None:
            self._map.close()
        os.ftruncate(self._fd, self._used)
        os.close(self._fd)
        self._fd = -1
