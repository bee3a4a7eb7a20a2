"""The warm parent: imports the servers' frameworks once, then forks a fresh uvicorn server per request.

:mod:`harness.forkserver` runs it as ``python -P -m harness.server.forkserver MODULE...``. It
imports each MODULE it can (third-party frameworks and the probe, never an app), then
reads requests from its stdin, one JSON line each: ``{"args": [...], "cwd": ..., "env":
{...}, "log": ...}``. For each it forks a child that becomes what ``python -m uvicorn
ARGS`` would be, started in ``cwd`` with exactly ``env``, in a session (and so a process
group) of its own, with /dev/null as stdin and ``log`` as stdout and stderr, and answers
``started PID`` on its stdout. A request ``{"signal": SIG, "pid": PID}`` sends SIG to that
child's process group, the server and whatever its app started (:func:`signal_group`):
only this process reaps the servers, so only it can tell that PID is still theirs. When
a child ends, what it left in its group is killed, then it is reaped and ``exited PID
CODE`` written, CODE as :mod:`subprocess` gives it (negative: the signal that ended it).
At the end of its stdin (the harness stopped it) or on SIGTERM (Linux's word that the
harness died, :func:`die_with_parent`) it ends its children's groups, SIGTERM then, after
``END_TIMEOUT``, SIGKILL, and exits.

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
import time
from typing import Any

STARTED = "started"
EXITED = "exited"
END_TIMEOUT = 2.0  # seconds the servers still running at the end get to stop before they are killed

_END_POLL = 0.02


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


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to server ``pid`` and to every process its app started: its process group.

    The caller must not have reaped ``pid`` yet: until then no other process can have it,
    as its pid or as its group's id. A server forked a moment ago may not lead its group
    yet (:func:`_run_uvicorn`'s ``setsid``); then it is signalled alone, having started nothing.
    """
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _serve() -> dict[str, Any] | None:
    """Fork a child per request until stdin ends: the request in a child, None here at the end."""
    children: set[int] = set()  # forked and not yet reaped: the pids that signal_group may be given
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)  # a SIGCHLD or SIGTERM wakes the select below, its number read there
    signal.signal(signal.SIGCHLD, lambda *_: None)  # with SIG_DFL, SIGCHLD would never be delivered
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(0, selectors.EVENT_READ)
            selector.register(wake_r, selectors.EVENT_READ)
            unread = b""
            while True:
                for key, _ in selector.select():
                    if key.fd == wake_r:
                        woken = os.read(wake_r, 4096)
                        _report_exits(children)
                        if signal.SIGTERM in woken:
                            _end(children)
                            return None
                        continue
                    chunk = os.read(0, 65536)
                    if not chunk:
                        _end(children)
                        return None
                    unread += chunk
                    while b"\n" in unread:
                        line, _, unread = unread.partition(b"\n")
                        request = dict(json.loads(line))
                        if "signal" in request:
                            if request["pid"] in children:
                                signal_group(request["pid"], request["signal"])
                            continue
                        # A SIGTERM for the child waits until it has its default action back (below).
                        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
                        pid = os.fork()
                        if pid == 0:
                            return request
                        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                        children.add(pid)
                        _say(f"{STARTED} {pid}")
    finally:  # in a child too: none of this may reach the server
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        os.close(wake_r)
        os.close(wake_w)


def _report_exits(children: set[int]) -> None:
    """Say which servers exited, killing what each left in its process group before reaping it.

    Looked at without reaping first (``WNOWAIT``): a reaped server's pid, its group's id,
    may at once be another process's.
    """
    while True:
        try:
            exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if exited is None:
            return
        signal_group(exited.si_pid, signal.SIGKILL)
        pid, status = os.waitpid(exited.si_pid, 0)
        children.discard(pid)
        _say(f"{EXITED} {pid} {os.waitstatus_to_exitcode(status)}")


def _end(children: set[int]) -> None:
    """End the servers still running, and what their apps started: SIGTERM, ``END_TIMEOUT``, SIGKILL."""
    for pid in children:
        signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + END_TIMEOUT
    while children and time.monotonic() < deadline:
        time.sleep(_END_POLL)
        _report_exits(children)
    for pid in children:
        signal_group(pid, signal.SIGKILL)


def _say(line: str) -> None:
    # Not sys.stdout: a child must not inherit a half-written buffer. A harness that died reads no more.
    with contextlib.suppress(BrokenPipeError):
        os.write(1, f"{line}\n".encode())


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
