"""The harness's files on disk: where output goes, new run folders, whole-or-nothing writes, JSON Lines.

Standard library and :mod:`harness.errors` only: the pytest plugin imports it when pytest starts.
A write that fails raises :class:`~harness.errors.WriteError` and leaves no part of itself behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from harness.errors import WriteError

DEFAULT_OUT_DIR = Path("harness-out")  # where run folders go, under the current folder (ignored by git)


def folder_safe(name: str) -> bool:
    """Whether ``name`` can name a folder as it is: ASCII letters, digits, '.', '_', '-' and spaces, at most 100.

    ASCII: ``str.isalnum`` takes "é" and "٣" too, which a file system may store in another
    normal form, and which a variant's name, sent in a request header, cannot hold.
    """
    return 0 < len(name) <= 100 and all((c.isascii() and c.isalnum()) or c in "._- " for c in name)


def make_run_dir(out_dir: Path, name: str) -> Path:
    """A new folder for the run (or sweep) ``name`` under ``out_dir``; two runs at once never share one."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        candidate = out_dir / (f"{stamp}-{name}" + (f"-{attempt}" if attempt else ""))
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free run folder under {out_dir}")


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[IO[str]]:
    """A file to write ``path`` through: a reader never sees half of it, even if the writer is killed.

    Each writer gets its own temporary file, so two runs refreshing one index never mix. A
    write that fails (a full disk; a folder named ``path``) leaves ``path`` as it was, no
    temporary file behind, and raises :class:`WriteError`.
    """
    with writing(path):
        partial = tempfile.NamedTemporaryFile(  # noqa: SIM115 - entered below, once it exists
            "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".partial", delete=False
        )
    try:
        with partial:
            os.chmod(partial.name, 0o666 & ~_umask())  # as open() would make it; a temp file is private
            yield partial
        # Outside the body: closing flushes what is buffered, and a full disk may only show then.
        os.replace(partial.name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(partial.name)
        if isinstance(exc, OSError):
            raise WriteError(path, exc) from None
        raise


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Inside, an OSError is a failed write of ``path``: a :class:`WriteError` that names it and the system's reason."""
    try:
        yield
    except OSError as exc:
        raise WriteError(path, exc) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON Lines file written as things happened (journal, probe events, trace).

    A missing file has none; a line cut short when its writer was killed is skipped, and so
    is any other line that is not a JSON object in UTF-8. Other errors of reading are the caller's.
    """
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    objects = []
    for line in lines:
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):  # ValueError: not JSON, or not UTF-8
            continue
        if isinstance(value, dict):
            objects.append(value)
    return objects


class JsonLines:
    """A JSON Lines file appended as things happen, one object a line, each line whole or not there at all.

    Unbuffered: a line is on disk when :meth:`add` returns, and a line a full disk cut short
    is cut back off the file at once, not left in a buffer for the next write or the close to
    finish, so what was written before stays readable.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with writing(path):
            self._file = path.open("ab", buffering=0)
        self._end = os.fstat(self._file.fileno()).st_size

    def add(self, value: Any) -> None:
        line = (json.dumps(value) + "\n").encode()
        try:
            written = 0
            while written < len(line):  # a write to a filling disk may take part of the line and report it
                written += self._file.write(line[written:])
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._file.fileno(), self._end)
            raise WriteError(self.path, exc) from None
        self._end += len(line)

    def clear(self) -> None:
        """Forget every line written: what they held is kept elsewhere now."""
        os.ftruncate(self._file.fileno(), 0)  # in append mode, the next line goes to the start
        self._end = 0

    def close(self) -> None:
        self._file.close()
