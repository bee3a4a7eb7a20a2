from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import LaunchError
from harness.launcher import Server, ServerState
from harness.variant import Variant
from tests.conftest import StartServer, is_running

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_a_server_binds_loopback_on_its_own_port_and_stops(start_server: StartServer) -> None:
    first = await start_server("unpatched")
    second = await start_server("patched")
    assert first.base_url.startswith("http://127.0.0.1:")
    assert first.port != second.port
    assert "Uvicorn running on http://127.0.0.1:" in first.log_tail()
    first.stop()
    first.stop()  # stopping twice is harmless
    assert first.state is ServerState.STOPPED
    assert not is_running(first.pid)


async def test_a_variant_that_cannot_import_fails_with_its_name_and_log(tmp_path: Path) -> None:
    broken = Variant(name="broken", app="app_variants.no_such_module:app", description="", expect="fails")
    server = Server(broken, tmp_path / "broken", time_scale=1.0)
    with pytest.raises(LaunchError) as caught:
        await server.wait_ready(timeout=30)
    assert "variant 'broken' exited with code" in caught.value.message
    assert "No module named 'app_variants.no_such_module'" in caught.value.log_tail
    assert not is_running(server.pid)


async def test_a_server_that_never_gets_ready_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    server = Server(
        Variant(name="patched", app="app_variants.patched:app", description="", expect="clean"),
        tmp_path / "slow",
        time_scale=1.0,
    )
    with pytest.raises(LaunchError, match=r"did not start within 0\.01 s"):
        await server.wait_ready(timeout=0.01)
    assert not is_running(server.pid)
