"""Ctrl-C and SIGTERM stop a run the same way; teardown holds them until it is done.

``harness`` treats SIGTERM (what ``kill``, CI runners and process managers send) as a
Ctrl-C: the run stops, its servers are stopped, what was measured is written marked
incomplete. Only the exit code tells them apart: 130 for SIGINT, 143 for SIGTERM, as
shells report a process ended by either. While the harness stops servers and writes the
results, a further signal waits until that is done instead of cutting it in half.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from harness.errors import ExitCode

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Which stop signal arrived last, once :func:`sigterm_as_ctrl_c` is in force."""

    def __init__(self) -> None:
        self.received: int | None = None

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.TERMINATED if self.received == signal.SIGTERM else ExitCode.INTERRUPTED

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # Hand over to whatever handles Ctrl-C right now: Python's default raises
        # KeyboardInterrupt; asyncio's cancels the running trial first.
        self.received = signum
        _deliver_as_ctrl_c(signum, frame)


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[StopSignals]:
    """While inside, SIGTERM does what Ctrl-C does; the yielded object knows which came."""
    signals = StopSignals()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield signals
        return
    previous = signal.signal(signal.SIGTERM, signals.on_sigterm)
    try:
        yield signals
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Run the block to its end; a stop signal that arrives meanwhile is acted on afterwards.

    Outside the main thread Python delivers no signals to the code anyway, so there is
    nothing to hold.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, FrameType | None]] = []
    previous = {signum: signal.signal(signum, lambda s, f: pending.append((s, f))) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for stop_signal, handler in previous.items():
            signal.signal(stop_signal, handler)
        if pending:
            received, frame = pending[0]
            _deliver(previous[signal.Signals(received)], received, frame)


def _deliver_as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    handler = signal.getsignal(signal.SIGINT)
    if handler == signal.SIG_IGN:  # a shell's background job ignores Ctrl-C; SIGTERM must still stop it
        handler = signal.default_int_handler
    _deliver(handler, signum, frame)


def _deliver(handler: signal._HANDLER, signum: int, frame: FrameType | None) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler != signal.SIG_IGN:
        raise KeyboardInterrupt
