"""The warm parent: imports the servers' frameworks once, then forks a fresh uvicorn server per request.

:mod:`harness.forkserver` runs it as ``python -P -m harness.server.forkserver MODULE...``. It
imports each MODULE it can (third-party frameworks and the probe, never an app), then
reads requests from its stdin, one JSON line each: ``{"args": [...], "cwd": ..., "env":
{...}, "log": ...}``. For each it forks a child that becomes what ``python -m uvicorn
ARGS`` would be, started in ``cwd`` with exactly ``env``, in a session of its own, with
/dev/null as stdin and ``log`` as stdout and stderr, and answers ``started PID`` on its
stdout. When a child ends it writes ``exited PID CODE``, CODE as :mod:`subprocess` gives
it (negative: the signal that ended it). At the end of its stdin (the harness stopped it,
or died) it exits, and Linux ends its children (:func:`die_with_parent`).

A child keeps only the modules imported here: its stdin, stdout and stderr are replaced,
the signal plumbing is closed and reset, and no thread, socket or connection exists here
to inherit (``tests/harness/test_forkserver.py`` checks that from inside a forked server).
It differs from a cold start in what the interpreter fixes when it starts: the
``PYTHON*`` variables (so the harness starts cold a server whose environment sets them
otherwise), the hash seed (every child has this process's), and the preloaded frameworks,
imported before the variant's environment and ``app_dir`` apply.

Standard library only at module level, like the probe: it runs on the servers' interpreter.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import runpy
import selectors
import signal
import sys
from typing import Any

STARTED = "started"
EXITED = "exited"


def main(preload: list[str]) -> int:
    for name in preload:
        with contextlib.suppress(ImportError):  # not on this stack: a server imports what it uses itself
            importlib.import_module(name)
    parent = os.getpid()
    request = _serve()
    if request is None:
        os._exit(0)  # nothing to flush: the harness waits for this exit, not for the frameworks' finalization
    return _run_uvicorn(request, parent)


def die_with_parent() -> None:
    """Ask Linux to end this process with SIGTERM when its parent dies, even by SIGKILL.

    Linux sends the signal when the forking *thread* exits: the harness starts the warm
    parent (and a server it starts cold) from its main thread, where its event loop runs,
    and the warm parent has no other thread.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _serve() -> dict[str, Any] | None:
    """Fork a child per request until stdin ends: the request in a child, None here at the end."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)  # a SIGCHLD wakes the select below
    signal.signal(signal.SIGCHLD, lambda *_: None)  # with SIG_DFL, SIGCHLD would never be delivered
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(0, selectors.EVENT_READ)
            selector.register(wake_r, selectors.EVENT_READ)
            unread = b""
            while True:
                for key, _ in selector.select():
                    if key.fd == wake_r:
                        os.read(wake_r, 4096)
                        _report_exits()
                        continue
                    chunk = os.read(0, 65536)
                    if not chunk:
                        return None
                    unread += chunk
                    while b"\n" in unread:
                        line, _, unread = unread.partition(b"\n")
                        pid = os.fork()
                        if pid == 0:
                            return dict(json.loads(line))
                        _say(f"{STARTED} {pid}")
    finally:  # in a child too: none of this may reach the server
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(wake_r)
        os.close(wake_w)


def _report_exits() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _say(f"{EXITED} {pid} {os.waitstatus_to_exitcode(status)}")


def _say(line: str) -> None:
    os.write(1, f"{line}\n".encode())  # not sys.stdout: a child must not inherit a half-written buffer


def _run_uvicorn(request: dict[str, Any], parent: int) -> int:
    """In the forked child: become ``python -m uvicorn ARGS`` as the request describes it; its exit code."""
    os.setsid()  # the terminal's Ctrl-C is for the harness, which stops its servers
    die_with_parent()
    if os.getppid() != parent:
        return 1  # the warm parent died before the line above: nothing would end this server
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path.insert(0, os.getcwd())  # as ``python -m`` puts its working directory first
    sys.argv = ["uvicorn", *request["args"]]
    runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)  # ends by SystemExit with uvicorn's code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
