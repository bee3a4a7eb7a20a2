"""The plugin beyond one machine: workers in folders of their own send their results over xdist's channel.

A popen worker with ``chdir`` gets its arguments as a worker on another machine does
(xdist rewrites those that name existing paths relative to its rsync roots) and shares
no folder with the controller but the rsynced ones, so it stands in for one. Closer
still: a ``socket=`` worker in a network namespace and UTS namespace of its own (a host
name of its own, reached over a veth pair), where it runs its servers on its own loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.results import TRIALS_FILE, read_results
from tests.harness.test_plugin import BUILDS, BURST

_SWAPPED = BURST.format(name="swapped", trials=1) + '[expect]\nunpatched = "clean"\npatched = "fails"\n'
_WORKERS = 2
_SEEN = "seen-by-worker.json"
_REMOTE_HOST = "harness-remote"  # the host name of the namespace's worker
_SOCKET_PORT = 8888  # the namespace is the test's own: nothing else listens there

# Rsynced with the scenarios, so loaded by each worker: what it was told, written in its own folder.
_CONFTEST = f"""
import json, os
from pathlib import Path


def pytest_configure(config):
    if hasattr(config, "workerinput"):
        seen = {{"cwd": os.getcwd(), "args": list(config.invocation_params.args), "workerinput": config.workerinput}}
        Path({_SEEN!r}).write_text(json.dumps(seen, default=str))
"""


def _scenarios(pytester: pytest.Pytester) -> list[str]:
    """Two scenario files in ``scenarios/``, named by absolute path: xdist rewrites them relative to the rsync root."""
    folder = pytester.mkdir("scenarios")
    folder.joinpath("good.toml").write_text(BURST.format(name="good", trials=2))
    folder.joinpath("swapped.toml").write_text(_SWAPPED)
    folder.joinpath("conftest.py").write_text(_CONFTEST)
    return [str(folder / "good.toml"), str(folder / "swapped.toml")]


def _verdicts(session: Path) -> dict[tuple[str, str], str]:
    return {
        (name, verdict.variant): verdict.kind
        for name in ("good", "swapped")
        for verdict in read_results(session / name / "results.json").verdicts
    }


@pytest.mark.e2e
@pytest.mark.slow
def test_workers_in_folders_of_their_own_send_every_record_to_the_controller_which_alone_writes_them(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenarios = _scenarios(pytester)
    folders = [tmp_path / f"worker{n}" for n in range(_WORKERS)]
    gateways = [option for folder in folders for option in ("--tx", f"popen//chdir={folder}")]
    item_temp = tmp_path / "temp"
    item_temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(item_temp))  # where the workers' items run: nothing is left there

    # No --harness-out: the controller writes into harness-out/ of its own folder, a path no worker is given.
    # --dist loadgroup here, load (-n) in test_plugin.py: under both, a scenario's builds share a worker.
    options = ("--rsyncdir=scenarios", "-p", "no:cacheprovider")
    result = pytester.runpytest("--dist=loadgroup", *gateways, *scenarios, *options)

    result.assert_outcomes(passed=4, failed=2)
    [session] = (pytester.path / "harness-out").iterdir()
    for name, trials in (("good", 2), ("swapped", 1)):
        for build in BUILDS:
            item = session / name / build / "results.json"
            assert len(read_results(item).trials) == trials
            assert len((item.parent / TRIALS_FILE).read_text().splitlines()) == trials
        merged = read_results(session / name / "results.json")
        assert merged.variants == BUILDS and len(merged.trials) == trials * len(BUILDS) and merged.complete
        # Each scenario's builds ran on one worker, and its report says which.
        [where] = set(merged.hosts.values())
        assert set(merged.hosts) == set(BUILDS) and where.startswith(f"{socket.gethostname()} (gw")
        assert f"ran on <b>{where}</b>" in (session / name / "report.html").read_text()
    assert (session / "index.html").exists()

    seen = [json.loads((folder / _SEEN).read_text()) for folder in folders]
    assert sorted(s["cwd"] for s in seen) == [str(folder) for folder in folders]
    told = json.dumps(seen)
    assert str(session.parent) not in told and "harness-out" not in told
    assert all({"scenarios/good.toml", "scenarios/swapped.toml"} <= set(s["args"]) for s in seen)
    written = ("results.json", TRIALS_FILE, "report.html", "index.html")
    assert not [path for folder in folders for path in folder.rglob("*") if path.name in written]
    assert not list(item_temp.glob("harness-item-*")), "an item left its temporary folder behind"

    # The same scenarios in one process: the same verdicts.
    alone = pytester.runpytest("-p", "no:xdist", *scenarios, "--harness-out=alone", "-p", "no:cacheprovider")
    alone.assert_outcomes(passed=4, failed=2)
    [alone_session] = (pytester.path / "alone").iterdir()
    assert _verdicts(session) == _verdicts(alone_session)
    assert set(_verdicts(session).values()) == {"met", "regression", "silent"}


@pytest.mark.e2e
@pytest.mark.slow
def test_harness_out_as_one_argument_works_on_a_worker_with_a_folder_of_its_own(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()  # exists already: as two arguments, xdist would have to rewrite it
    gateway = f"popen//chdir={tmp_path / 'worker'}"
    options = ("-k", "recommended", "--harness-trials=1", "-p", "no:cacheprovider")

    result = pytester.runpytest("--dist=load", "--tx", gateway, "burst", f"--harness-out={out}", *options)

    result.assert_outcomes(passed=1)  # the other builds deselected on the worker
    [session] = out.iterdir()
    assert read_results(session / "burst" / "results.json").variants == ("recommended",)


@pytest.mark.slow
def test_what_xdist_could_not_send_to_such_a_worker_is_a_usage_error_that_says_what_to_write(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    gateway = ("--dist=load", "--tx", f"popen//chdir={tmp_path / 'worker'}")
    [good, _] = _scenarios(pytester)
    pytester.mkdir("elsewhere")
    cases = {
        (
            "burst",
            "--harness-out",
            str(tmp_path / "out"),
        ): "--harness-out: *; write it as one argument: --harness-out=DIR",
        # A relative path, and an absolute one outside the folders rsynced.
        ("--rsyncdir=scenarios", "scenarios/good.toml"): "scenarios/good.toml: *absolute path inside a folder*",
        ("--rsyncdir=elsewhere", good): f"{good}: *name the scenario file by its absolute path*",
    }
    for args, message in cases.items():
        result = pytester.runpytest(*gateway, *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, args
        result.stderr.fnmatch_lines([f"*{message}*"])
        assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    # Without a gateway that rewrites arguments, two are as good as one (every item deselected: nothing runs).
    result = pytester.runpytest("-n", "2", "burst", "--harness-out", str(tmp_path / "out"), "-k", "no-such-build")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


@dataclass(frozen=True)
class RemoteWorker:
    address: str  # host:port of its execnet socket server, reachable from here only
    folder: Path  # its working folder, where xdist's rsync puts pytest and the scenarios
    temp: Path  # its TMPDIR, where its items run


@pytest.fixture
def remote_worker(tmp_path: Path) -> Iterator[RemoteWorker]:
    """An execnet socket server in a network namespace (``ip netns``) with a host name of its own (``unshare --uts``).

    Skipped where namespaces cannot be made (not root, no ``ip``). The server listens on the
    namespace's end of a veth pair, a private /30 only this machine routes to; it is stopped
    by escalation and the namespace, with the pair, deleted.
    """
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("unshare"):
        pytest.skip("needs root, ip and unshare to make a network namespace")
    namespace, veth = f"harness-{os.getpid()}", f"hx{os.getpid()}"
    subnet = f"10.231.{os.getpid() % 250}"
    made = subprocess.run(["ip", "netns", "add", namespace], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
    server = None
    try:
        for command in (
            f"ip link add {veth}a type veth peer name {veth}b",
            f"ip link set {veth}b netns {namespace}",
            f"ip addr add {subnet}.1/30 dev {veth}a",
            f"ip link set {veth}a up",
            f"ip netns exec {namespace} ip addr add {subnet}.2/30 dev {veth}b",
            f"ip netns exec {namespace} ip link set {veth}b up",
            f"ip netns exec {namespace} ip link set lo up",  # the worker's servers listen on its 127.0.0.1
        ):
            subprocess.run(command.split(), check=True, capture_output=True)
        worker = RemoteWorker(address=f"{subnet}.2:{_SOCKET_PORT}", folder=tmp_path / "remote", temp=tmp_path / "rtmp")
        worker.folder.mkdir()
        worker.temp.mkdir()
        serve = f"hostname {_REMOTE_HOST} && exec {sys.executable} -m execnet.script.socketserver {worker.address}"
        log = tmp_path / "socketserver.log"
        with log.open("wb") as output:
            server = subprocess.Popen(
                ["ip", "netns", "exec", namespace, "unshare", "--uts", "sh", "-c", serve],
                cwd=worker.folder,
                env={**os.environ, "TMPDIR": str(worker.temp)},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        _wait_until_listening(f"{subnet}.2", _SOCKET_PORT, server, log)
        yield worker
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)  # the veth pair goes with it


def _wait_until_listening(
    host: str, port: int, server: subprocess.Popen[bytes], log: Path, timeout: float = 10
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the socket server exited with code {server.returncode}:\n{log.read_text()}"
        try:
            socket.create_connection((host, port), timeout=0.5).close()  # it serves one connection, then the next
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"no socket server on {host}:{port} after {timeout} s")


@pytest.mark.e2e
@pytest.mark.slow
def test_a_worker_on_another_host_over_a_socket_sends_its_records_to_the_controller(
    pytester: pytest.Pytester, remote_worker: RemoteWorker
) -> None:
    [good, _] = _scenarios(pytester)
    gateway = f"socket={remote_worker.address}"
    options = ("--harness-trials=1", "--harness-out=out", "-p", "no:cacheprovider")

    # In a process of its own: execnet leaves its socket to the garbage collector, a ResourceWarning here.
    result = pytester.runpytest_subprocess("--dist=load", "--tx", gateway, "--rsyncdir=scenarios", good, *options)

    result.assert_outcomes(passed=3)
    [session] = (pytester.path / "out").iterdir()
    merged = read_results(session / "good" / "results.json")
    assert len(merged.trials) == len(BUILDS) and [v.kind for v in merged.verdicts] == ["met"] * len(BUILDS)
    assert merged.hosts == dict.fromkeys(BUILDS, f"{_REMOTE_HOST} (gw0)") and socket.gethostname() != _REMOTE_HOST
    assert f"ran on <b>{_REMOTE_HOST} (gw0)</b>" in (session / "good" / "report.html").read_text()
    seen = json.loads(next(remote_worker.folder.rglob(_SEEN)).read_text())
    assert "scenarios/good.toml" in seen["args"] and str(session) not in json.dumps(seen)
    assert not list(remote_worker.folder.rglob("results.json")) and not list(remote_worker.temp.iterdir())
