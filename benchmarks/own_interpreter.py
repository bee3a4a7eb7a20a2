"""What a build's own interpreter (``python =`` in its variant) costs a trial's server start, warm and cold.

Usage: python benchmarks/own_interpreter.py PYTHON [STARTS]   (default 10; run from the repository root)

PYTHON is another virtualenv's interpreter with FastAPI, Pydantic, Peewee and uvicorn and
without the harness (``python3 -m venv V && V/bin/pip install -r harness/stacks/legacy.txt``).
Starts the tutorial's ``unpatched`` build STARTS times in each of three ways, one after
another, and prints the median (min-max) seconds from ``Server(...)`` until
``Server.wait_ready`` returns (the start of every trial's server):

- the harness's interpreter, forked from its warm parent (as every build without ``python =``);
- PYTHON, forked from a warm parent of its own (what the launcher does);
- PYTHON, started cold (``python -m uvicorn``): what it would cost without that warm parent,
  forced by a ``PYTHON*`` variable in the build's environment that its warm parent lacks (ignored by Python).

The warm parents are started, and their imports waited for, before the first start is timed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import anyio
from _figures import spread

from harness.config import builtin_config
from harness.forkserver import warm_parent
from harness.launcher import Server
from harness.variant import Variant

_WARM_UP_STARTS = 2  # untimed first starts of each way: a warm parent's imports, the page cache


async def _start_seconds(variant: Variant, folder: Path, starts: int) -> list[float]:
    times = []
    for number in range(_WARM_UP_STARTS + starts):
        began = time.perf_counter()
        server = Server(variant, folder / f"{variant.name}-{number}", time_scale=0.05)
        try:
            await server.wait_ready()
            took = time.perf_counter() - began
        finally:
            server.stop()
        if number >= _WARM_UP_STARTS:
            times.append(took)
    return times


def main(python: str, starts: int) -> None:
    own = builtin_config().variants["unpatched"]
    other = replace(own, python=python)
    cold = replace(other, env={**other.env, "PYTHONHARNESSCOLD": "1"})  # unlike its warm parent's
    warm_parent(None), warm_parent(python)
    with tempfile.TemporaryDirectory() as folder:
        for label, variant in (
            ("harness's python, warm", own),
            ("own python, warm", other),
            ("own python, cold", cold),
        ):
            seconds = anyio.run(_start_seconds, variant, Path(folder), starts)
            print(f"{label:<24} {spread(seconds)} s to ready ({starts} starts)")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10)
