"""The keeper of the harness's own PostgreSQL server: starts it, and stops it however the harness ends.

A ``postgres`` started by ``pg_ctl`` is a daemon: it outlives a harness killed by SIGKILL,
which has no chance to stop anything. So :class:`harness.postgres.PostgresServer` runs
``python -P -m harness.postgres_keeper`` instead, in a session of its own (the terminal's
Ctrl-C is the harness's to handle), with a pipe as its stdin; the keeper runs ``initdb``
and ``postgres`` as its children. When the harness closes the pipe, or ends in any way
(Linux closes the pipe of a killed process), the keeper reads the end of its stdin, stops
the server and removes its folder. A SIGTERM, SIGINT or SIGHUP sent to the keeper itself
does the same.

What goes through the pipes, one JSON line each:

- stdin: the configuration (``binaries``, the folder of ``initdb`` and ``postgres``;
  ``parent``, where to make the temporary folder, and ``prefix``, how its name starts;
  ``user``, the system user to run them as, or null; ``password``, or null for trust
  authentication; ``settings``; ``timeout`` for ``initdb`` and the start together;
  ``stop_timeout`` for each step of the stop;
  ``seed``, a cluster never started to copy instead of running ``initdb``, or null;
  ``keep_seed``, whether to keep a copy of its own cluster, never started, for the next
  keepers' ``seed``), then nothing: its end is the order to stop.
- stdout: ``{"folder": PATH}`` once the temporary folder exists; ``{"ready": PORT,
  "initdb": S, "start": S}`` once the server takes connections on 127.0.0.1:PORT (with
  ``"seed": PATH`` if it kept one; ``initdb`` is then the copy's time when it copied), or
  ``{"error": MESSAGE}`` if it cannot start; ``{"stopped": S}`` once it has stopped; an
  ``{"error"}`` if the folder could not be removed. Then the keeper exits.

The folder holds ``data/`` (the cluster), ``seed/`` if kept, ``server.log``, ``initdb.log`` and the server's
unix socket. The server is ready when ``postmaster.pid`` says so, as ``pg_ctl -w`` waits;
a port taken between the choice and the bind is retried with another. The stop
escalates: SIGINT (fast shutdown), SIGQUIT (immediate), then SIGKILL to the server and to
each of its children (each is in a session of its own, so no process group holds them).
Were the keeper itself killed, Linux sends the server SIGQUIT (``PR_SET_PDEATHSIG``);
only the folder would remain.

Standard library only, and nothing of the harness: it must start fast and cannot fail to import.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, NoReturn

FOLDER_PREFIX = "harness-postgres-"
DATA = "data"
SEED = "seed"
SERVER_LOG = "server.log"
INITDB_LOG = "initdb.log"
SUPERUSER = "postgres"  # the same name whoever runs the harness
PORT_TRIES = 5
LOG_TAIL_LINES = 20

_POLL = 0.01  # seconds between looks at a starting server; the stdin pipe is watched meanwhile
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PORT_TAKEN = b"Address already in use"


class _Abandoned(Exception):
    """The harness closed the pipe or died, or the keeper was sent a stop signal."""


class _Failed(Exception):
    """The server could not be made ready; the message says why, with the tail of the log."""


def main() -> int:
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _abandon)
    try:
        config = json.loads(_first_line())
    except _Abandoned:
        return 0
    try:
        folder = Path(tempfile.mkdtemp(prefix=config.get("prefix") or FOLDER_PREFIX, dir=config["parent"]))
    except OSError as exc:
        _say(error=f"cannot make the server's folder in {config['parent']}: {exc}")
        return 0
    server: subprocess.Popen[bytes] | None = None
    try:
        owner = _owner(config["user"])
        if owner:
            os.chown(folder, *owner)
        _say(folder=str(folder))
        began = time.monotonic()
        deadline = began + config["timeout"]
        seed = config.get("seed")
        if seed:  # a copy costs a tenth of initdb: 60 ms against 0.6 s in /dev/shm
            _copy(Path(seed), folder / DATA, folder, owner, deadline)
        else:
            _initdb(config, folder, owner, deadline)
        kept = {}
        if config.get("keep_seed"):
            _copy(folder / DATA, folder / SEED, folder, owner, deadline)
            kept = {"seed": str(folder / SEED)}
        initialised = time.monotonic()
        server, port = _start(config, folder, owner, deadline)
        _say(ready=port, initdb=initialised - began, start=time.monotonic() - initialised, **kept)
        while True:
            _watch_stdin(None)
    except _Abandoned:
        pass
    except _Failed as exc:
        _say(error=str(exc))
    except Exception as exc:  # reported, not printed: no one reads the keeper's stderr
        _say(error=f"the keeper failed: {type(exc).__name__}: {exc}")
    finally:
        for signum in _STOP_SIGNALS:  # the cleanup is not to be cut short
            signal.signal(signum, signal.SIG_IGN)
        if server is not None:
            stopping = time.monotonic()
            _stop(server, config["stop_timeout"])
            _say(stopped=time.monotonic() - stopping)
        shutil.rmtree(folder, ignore_errors=True)
        if folder.exists():
            _say(error=f"could not remove the server's folder {folder}")
    return 0


def _initdb(config: dict[str, Any], folder: Path, owner: tuple[int, int] | None, deadline: float) -> None:
    command = [str(Path(config["binaries"], "initdb")), "-D", str(folder / DATA), "-U", SUPERUSER]
    command += ["-E", "UTF8", "--locale=C", "--no-sync"]  # no fsync: the cluster lives for one run
    password_file = folder / "password"
    if config["password"] is None:
        command.append("--auth=trust")
    else:
        password_file.write_text(config["password"])
        password_file.chmod(0o600)
        if owner:
            os.chown(password_file, *owner)
        command += ["--auth=scram-sha-256", f"--pwfile={password_file}"]
    log_path = folder / INITDB_LOG
    with log_path.open("wb") as log:
        process = _spawn(command, log, owner)
    try:
        code = _wait(process, deadline)
    finally:
        _kill(process)
        password_file.unlink(missing_ok=True)
    if code is None:
        raise _Failed(f"initdb did not finish within {config['timeout']:g} s{_tail(log_path)}")
    if code != 0:
        raise _Failed(f"initdb exited with code {code}{_tail(log_path)}")


def _copy(source: Path, target: Path, folder: Path, owner: tuple[int, int] | None, deadline: float) -> None:
    """Copy a cluster's folder, as ``owner``, its modes kept (postgres refuses a data folder others may read)."""
    log_path = folder / INITDB_LOG
    with log_path.open("ab") as log:
        process = _spawn(["cp", "-a", str(source), str(target)], log, owner)
    try:
        code = _wait(process, deadline)
    finally:
        _kill(process)
    if code != 0:
        said = "did not finish in time" if code is None else f"exited with code {code}"
        raise _Failed(f"copying the cluster {source} {said}{_tail(log_path)}")


def _start(
    config: dict[str, Any], folder: Path, owner: tuple[int, int] | None, deadline: float
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``postgres`` on a free port, another if that one was taken first; it and its port, once ready."""
    data = folder / DATA
    log_path = folder / SERVER_LOG
    settings = {**config["settings"], "listen_addresses": "127.0.0.1", "unix_socket_directories": str(folder)}
    options = [f"--{key}={value}" for key, value in settings.items()]
    for attempt in range(1, PORT_TRIES + 1):
        port = _free_port()
        with log_path.open("ab") as log:
            offset = log.tell()
            process = _spawn(
                [str(Path(config["binaries"], "postgres")), "-D", str(data), "-p", str(port), *options], log, owner
            )
        try:
            ready = _wait_ready(process, data, deadline)
        except BaseException:
            _stop(process, config["stop_timeout"])
            raise
        if ready:
            return process, port
        code = process.poll()
        if code is None:
            _stop(process, config["stop_timeout"])
            raise _Failed(f"postgres was not ready within {config['timeout']:g} s{_tail(log_path)}")
        if attempt < PORT_TRIES and _PORT_TAKEN in log_path.read_bytes()[offset:]:
            continue
        raise _Failed(f"postgres exited with code {code}{_tail(log_path)}")
    raise AssertionError("unreachable: the last attempt returns or raises")


def _wait_ready(process: subprocess.Popen[bytes], data: Path, deadline: float) -> bool:
    """Whether the server says it is ready in ``postmaster.pid``; False if it exits first or at the deadline."""
    while process.poll() is None and time.monotonic() < deadline:
        try:
            lines = (data / "postmaster.pid").read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            lines = []
        # The 8th line is the server's status; the 1st its pid, so no leftover file is mistaken for it.
        if len(lines) >= 8 and lines[0] == str(process.pid) and lines[7].strip() == "ready":
            return True
        _watch_stdin(_POLL)
    return False


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Fast shutdown, then immediate, then SIGKILL to the server and its children; returns once it is reaped."""
    for signum in (signal.SIGINT, signal.SIGQUIT):
        if process.poll() is not None:
            return
        process.send_signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    if process.poll() is None:
        children = _children(process.pid)
        process.kill()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()


def _spawn(command: list[str], log: IO[bytes], owner: tuple[int, int] | None) -> subprocess.Popen[bytes]:
    """``command`` with its output in ``log``, as ``owner`` (uid, gid) if given, ended by Linux if the keeper dies."""
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd="/",  # somewhere the server's user may enter
        user=owner[0] if owner else None,
        group=owner[1] if owner else None,
        extra_groups=[] if owner else None,  # not root's groups
        preexec_fn=_die_with_keeper,
    )


def _die_with_keeper() -> None:
    """SIGQUIT (immediate shutdown) when the keeper dies. Set after the change of user, which would clear it."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGQUIT)


def _wait(process: subprocess.Popen[bytes], deadline: float) -> int | None:
    """The exit code of ``process``, or None at the deadline; the stdin pipe is watched meanwhile."""
    while (code := process.poll()) is None:
        if time.monotonic() >= deadline:
            return None
        _watch_stdin(_POLL)
    return code


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def _first_line() -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(0, 65536)
        if not chunk:
            raise _Abandoned
        line += chunk
    return line


def _watch_stdin(timeout: float | None) -> None:
    """Wait up to ``timeout`` (None: for ever) for the end of stdin, and raise _Abandoned there."""
    if select.select([0], [], [], timeout)[0] and not os.read(0, 65536):
        raise _Abandoned


def _abandon(signum: int, frame: object) -> NoReturn:
    raise _Abandoned


def _owner(user: str | None) -> tuple[int, int] | None:
    if user is None:
        return None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return children


def _tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return ""
    return f"\n--- last lines of {log_path.name} ---\n" + "\n".join(lines) if lines else ""


def _say(**message: object) -> None:
    with contextlib.suppress(OSError):  # the harness may be gone: the cleanup goes on
        os.write(1, json.dumps(message).encode() + b"\n")


if __name__ == "__main__":
    sys.exit(main())
