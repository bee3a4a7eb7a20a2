"""The versions, platform and machine a run happened on, recorded in every results file."""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata

from harness.stack import installed_stack

PACKAGES = ("fastapi", "starlette", "anyio", "pydantic", "peewee", "uvicorn", "httpx")


def describe_environment() -> dict[str, str]:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["stack"] = installed_stack()
    versions["executable"] = sys.executable
    # The machine: runs merged from several (a CI job matrix, xdist's remote workers) say where each ran.
    versions["host"] = socket.gethostname()
    versions["cpus"] = str(os.cpu_count() or 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # set by pytest-xdist in each of its workers
    if worker:
        versions["worker"] = worker
    return versions
