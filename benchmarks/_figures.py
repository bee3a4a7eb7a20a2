"""What the benchmarks share: how they print a rate or a spread, and how they run a command, bounded in time."""

from __future__ import annotations

import contextlib
import math
import os
import resource
import shlex
import signal
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.stats import wilson_interval


def share(count: int, total: int) -> str:
    low, high = wilson_interval(count, total)
    return f"{count}/{total} ({count / total:.1%}, 95% CI {low:.1%}-{high:.1%})"


def paired_ratio(pairs: Sequence[tuple[float, float]]) -> str:
    """The median of ``a / b`` over pairs measured one right after the other, e.g. ``1.04 (95% CI 1.01-1.07)``.

    A shared machine's load drifts; within a pair it falls on both runs alike, so the pairs' ratios are
    steadier than the ratio of two medians. The interval is the median's own from the order statistics
    (how many ratios fall below it is binomial(n, 1/2)): it assumes nothing of how the ratios spread.
    """
    ratios = sorted(a / b for a, b in pairs)
    n = len(ratios)
    below = 0.0  # P(fewer than `rank` + 1 of the n ratios fall below the median)
    rank = 0
    while n and 2 * (below := below + math.comb(n, rank) / 2**n) <= 0.05:
        rank += 1
    interval = f"95% CI {ratios[rank - 1]:.2f}-{ratios[n - rank]:.2f}" if rank else "too few pairs for a 95% CI"
    return f"{statistics.median(ratios):.2f} ({interval}; {n} pairs)"


def spread(values: Sequence[float], digits: int = 2) -> str:
    """The median with the min-max, e.g. ``2.04 (1.98-2.31)``; one value alone."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


@dataclass(frozen=True)
class Ran:
    """A finished command: its wall time, exit code and output; ``timed_out`` if it was ended at its timeout.

    ``cpu_seconds`` is the user + system time of the command and of every descendant that was
    waited for (a harness's or the floor's servers): what it cost, whatever else the machine runs.
    """

    command: tuple[str, ...]
    seconds: float
    cpu_seconds: float
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def status(self) -> str:
        return f"timed out, ended after {self.seconds:.0f} s" if self.timed_out else f"exit code {self.returncode}"


def run(command: Sequence[str], *, timeout: float, cwd: Path | None = None, quiet: bool = False) -> Ran:
    """Print the command line, run it in a session of its own and time it; at ``timeout`` end the whole session.

    SIGTERM to the session first (the harness then stops its servers), SIGKILL 10 s later.
    """
    if not quiet:
        print(f"$ {shlex.join(command)}", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _signal_session(process, signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_session(process, signal.SIGKILL)
            stdout, stderr = process.communicate()
    except BaseException:  # Ctrl-C: leave nothing running
        _signal_session(process, signal.SIGKILL)
        process.wait()
        raise
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Ran(tuple(command), seconds, cpu, process.returncode, stdout, stderr, timed_out)


def _signal_session(process: subprocess.Popen[str], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signum)
