"""Writes that fail for real: a full disk (a file size limit, as the kernel enforces it) and a folder in the way."""

from __future__ import annotations

import contextlib
import json
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import ExitCode, WriteError
from harness.files import JsonLines, atomic_writer


@contextlib.contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """As on a full disk: no file of this process grows past ``size`` bytes; a write past it fails with EFBIG.

    SIGXFSZ, which would end the process instead, is ignored meanwhile.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_whole_file_write_that_fails_on_a_full_disk_leaves_the_old_file_and_no_partial(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("the last whole version")
    # Less than a buffer's worth: nothing reaches the disk before the close, where it fails.
    with pytest.raises(WriteError) as raised, file_size_limit(1000), atomic_writer(path) as file:
        file.write("x" * 5000)
    assert raised.value.message == f"cannot write {path}: File too large"
    assert raised.value.exit_code == ExitCode.HARNESS_ERROR
    assert path.read_text() == "the last whole version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_folder_where_the_file_should_be_is_a_write_error_and_leaves_no_partial(tmp_path: Path) -> None:
    (tmp_path / "index.html").mkdir()
    with pytest.raises(WriteError) as raised, atomic_writer(tmp_path / "index.html") as file:
        file.write("<html>")
    assert raised.value.message == f"cannot write {tmp_path / 'index.html'}: Is a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]


def test_a_failure_of_the_writer_itself_leaves_no_partial_and_stays_what_it_was(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), atomic_writer(tmp_path / "page.html") as file:
        file.write("<html>")
        _ = 1 / 0
    assert not list(tmp_path.iterdir())


def test_a_folder_that_is_gone_is_a_write_error(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="No such file or directory"), atomic_writer(tmp_path / "gone" / "page.html"):
        pass


def test_a_line_a_full_disk_cuts_short_is_cut_off_and_the_lines_before_stay_whole(tmp_path: Path) -> None:
    path = tmp_path / "trials.jsonl"
    long_line = ["x" * 700]  # far longer than the room a partial write leaves
    with contextlib.closing(JsonLines(path)) as log:
        log.add({"trial": 1})
        with file_size_limit(5000):
            with pytest.raises(WriteError) as raised:
                for trial in range(2, 1000):
                    log.add({"trial": trial, "records": long_line})
            written = path.read_bytes()
            assert written.endswith(b"\n") and 4000 < len(written) <= 5000
            with pytest.raises(WriteError):
                log.add({"trial": "again", "records": long_line})  # still no room: nothing of it stays either
            assert path.read_bytes() == written
        assert raised.value.message == f"cannot write {path}: File too large"
        log.add({"trial": "after"})  # room again: right after the last whole line
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"trial": 1} and lines[-1] == {"trial": "after"}
    assert [line["trial"] for line in lines[1:-1]] == list(range(2, len(lines)))


def test_a_line_log_clears_and_goes_on_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    with contextlib.closing(JsonLines(path)) as log:
        log.add({"n": 1})
        log.clear()
        log.add({"n": 2})
    assert path.read_text() == '{"n": 2}\n'


def test_a_line_log_that_cannot_be_opened_is_a_write_error(tmp_path: Path) -> None:
    (tmp_path / "records.jsonl").mkdir()
    with pytest.raises(WriteError, match="Is a directory"):
        JsonLines(tmp_path / "records.jsonl")
