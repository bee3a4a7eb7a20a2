"""The trace's file, written through a shared memory mapping: every write kept, by a killed process too."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from harness.files import read_json_lines
from harness.server.mapped_file import CHUNK, MappedFile


def test_writes_are_appended_past_many_chunks_and_close_cuts_the_file_to_them(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    path.write_bytes(b'{"kind": "before"}\n')  # what is there stays
    file = MappedFile(str(path))
    lines = [b'{"n": %d, "pad": "%s"}\n' % (n, b"x" * 300) for n in range(3 * CHUNK // 300)]

    for line in lines:
        assert file.write(line) == len(line)
    file.close()
    file.close()  # once is enough, twice does no harm

    assert path.read_bytes() == b'{"kind": "before"}\n' + b"".join(lines)


def test_a_process_killed_mid_trace_leaves_every_line_it_wrote_and_readers_skip_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    script = f"""
        import os, signal
        from harness.server.mapped_file import MappedFile
        file = MappedFile({str(path)!r})
        for n in range(1000):
            file.write(b'{{"n": %d}}\\n' % n)
        file.write(b'{{"n": "cut sh')
        os.kill(os.getpid(), signal.SIGKILL)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, timeout=60)

    assert done.returncode == -9, done.stderr
    assert path.stat().st_size == CHUNK  # not cut back: the rest of the chunk reads as NUL bytes
    assert read_json_lines(path) == [{"n": n} for n in range(1000)]


def test_a_file_that_may_not_grow_is_an_os_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    script = f"""
        import resource, signal
        from harness.server.mapped_file import CHUNK, MappedFile
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (CHUNK, CHUNK))
        file = MappedFile({str(path)!r})
        file.write(b"x" * (CHUNK - 1))
        try:
            file.write(b"yy")
        except OSError as exc:
            print(type(exc).__name__, exc.errno)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["OSError", "27"]  # EFBIG: the limit, as a full disk would be ENOSPC
