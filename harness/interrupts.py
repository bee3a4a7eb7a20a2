"""Ctrl-C and SIGTERM stop a run the same way; teardown holds them until it is done.

``harness`` treats SIGTERM (what ``kill``, CI runners and process managers send) as a
Ctrl-C: the run stops, its servers are stopped, what was measured is written marked
incomplete. Only the exit code tells them apart: 130 for SIGINT, 143 for SIGTERM, as
shells report a process ended by either. While the harness stops servers and writes the
results, a further signal waits until that is done instead of cutting it in half; so it
does while a stopped run writes its report and says where (:func:`seen_through`).

Two ways Python itself can undo that, and what this module does about them:

- Python turns a Ctrl-C into a KeyboardInterrupt raised in whatever code runs at that
  moment. When that is a ``__del__`` method, a weakref callback or a garbage collection,
  Python can only print it ("Exception ignored in: ...") and carries on: the Ctrl-C is
  lost. :func:`sigterm_as_ctrl_c` therefore also records every stop signal as it arrives,
  below Python's handlers (:func:`signal.set_wakeup_fd`), and the run loops call
  :func:`raise_if_stopped` between rounds and between cells, where a stop signal with no
  KeyboardInterrupt in flight can only have been swallowed. Python's printout of it, a
  traceback on a clean stop, is left out.
- Inside ``anyio.run``, asyncio's runner turns a first Ctrl-C into a cancellation of the
  running trials, which stop their servers in order; a second it raises as
  KeyboardInterrupt wherever the event loop happens to be, even inside anyio's own
  bookkeeping (:func:`first_stop_only` keeps those out). In a shell's background job, which
  ignores Ctrl-C, the runner takes none, and a SIGTERM cancels the trials itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TypeVar

from harness.errors import ExitCode, HarnessError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_T = TypeVar("_T")


class StopSignals:
    """Which stop signal arrived last, once :func:`sigterm_as_ctrl_c` is in force."""

    def __init__(self, wakeup: socket.socket | None = None) -> None:
        self.received: int | None = None
        self._wakeup = wakeup  # the reading end of the wakeup fd: one byte per signal, its number
        self._arrived = False

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.TERMINATED if self.received == signal.SIGTERM else ExitCode.INTERRUPTED

    @property
    def arrived(self) -> bool:
        """Whether a stop signal reached one of the process's handlers since the block began.

        A signal the process ignores (Ctrl-C in a shell's background job) never does.
        """
        while self._wakeup is not None and self._wakeup.fileno() != -1 and not self._arrived:  # -1: block over
            try:
                numbers = self._wakeup.recv(4096)
            except BlockingIOError:  # read to the end
                break
            stops = [number for number in numbers if number in STOP_SIGNALS]
            if stops:
                self._arrived = True
                self.received = self.received or stops[-1]
        return self._arrived

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # Hand over to whatever handles Ctrl-C right now: Python's default raises
        # KeyboardInterrupt; asyncio's cancels the running trial first.
        self.received = signum
        _deliver_as_ctrl_c(signum, frame)


_current: StopSignals | None = None  # the innermost sigterm_as_ctrl_c's: signals are the process's


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[StopSignals]:
    """While inside, SIGTERM does what Ctrl-C does; the yielded object knows which came, and whether one came."""
    global _current
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield StopSignals()
        return
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signals = StopSignals(reader)
    # Written by the C-level handler for every signal that has a Python handler, before that
    # handler runs: a record no exception raised later can erase.
    previous_wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = signal.signal(signal.SIGTERM, signals.on_sigterm)
    previous_hook = sys.unraisablehook

    def unless_a_stop(unraisable: sys.UnraisableHookArgs) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):  # a stop is acted on where the run checks
            previous_hook(unraisable)

    sys.unraisablehook = unless_a_stop
    outer, _current = _current, signals
    try:
        yield signals
    finally:
        _current = outer
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGTERM, previous)
        signal.set_wakeup_fd(previous_wakeup)
        reader.close()
        writer.close()


def was_stopped() -> bool:
    """Whether a stop signal arrived: a cancellation it caused is a stop, not a failure of the harness."""
    return _current is not None and _current.arrived


def raise_if_stopped() -> None:
    """At a point where a run can stop cleanly: raise the KeyboardInterrupt of a stop signal Python swallowed.

    Every KeyboardInterrupt ends the run it interrupts, so a run that reaches this point
    after a stop signal arrived lost its KeyboardInterrupt (a ``__del__`` method or a
    weakref callback was running when it was raised, and Python could only print it).
    Without :func:`sigterm_as_ctrl_c` in force (the pytest plugin, a test) there is no
    record, and nothing to do.
    """
    if was_stopped():
        raise KeyboardInterrupt


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Run the block to its end; a stop signal that arrives meanwhile is acted on afterwards.

    Outside the main thread Python delivers no signals to the code anyway, so there is
    nothing to hold; a signal the process ignores stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, FrameType | None]] = []
    previous = {
        signum: signal.signal(signum, lambda s, f: pending.append((s, f)))
        for signum in STOP_SIGNALS
        if signal.getsignal(signum) != signal.SIG_IGN
    }
    try:
        yield
    finally:
        for stop_signal, handler in previous.items():
            signal.signal(stop_signal, handler)
        if pending:
            received, frame = pending[0]
            _deliver(previous[signal.Signals(received)], received, frame)


def seen_through(
    run: Callable[[], _T],
    *,
    on_stop: Callable[[BaseException], None],
    stops: tuple[type[BaseException], ...] = (KeyboardInterrupt,),
) -> _T:
    """``run()``; if it ends in one of ``stops``, ``on_stop`` with it, held to its end, then that goes on up.

    For what a stopped run still owes its user: the report of what it saved, the line that
    says where. A second Ctrl-C that comes as the first one's KeyboardInterrupt leaves
    ``run`` (before ``on_stop`` could begin its :func:`held` block) is caught here, inside
    this function's own ``try``, and ``on_stop`` still runs: the stop under way already does
    what that one asks. As :func:`held` does, the stop is acted on once ``on_stop`` is done.
    """
    try:
        return run()
    except stops as exc:
        stopped = False
        while True:
            done = False
            try:
                with held():
                    on_stop(exc)
                    done = True
            except KeyboardInterrupt:
                if done:  # held() acting on a stop that came during on_stop
                    raise
                stopped = True  # it came before the hold began: on_stop is still to do
                continue
            break
        if stopped and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt from exc
        raise


@contextlib.contextmanager
def first_stop_only() -> Iterator[None]:
    """Inside an event loop: the first stop signal goes to the loop's Ctrl-C handler; later ones add nothing.

    asyncio's runner (behind ``anyio.run``) cancels the running trials on a first Ctrl-C;
    they stop their servers, within the launcher's stop timeout, and the runner then
    raises KeyboardInterrupt. A second Ctrl-C it raises at once, at whatever line the loop
    is on. Raised inside anyio as it started a worker thread, it left that thread never
    told to end, and Python waited for it at exit for ever; raised inside a cancel scope,
    it broke the scope (RuntimeError, exit 1). The stop under way already does what a
    later signal asks, so that one is only recorded (:func:`sigterm_as_ctrl_c`), as
    :func:`held` would hold it. SIGTERM comes here through :meth:`StopSignals.on_sigterm`.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ctrl_c = signal.getsignal(signal.SIGINT)
    if not callable(ctrl_c):  # ignored (a background job) or the OS's default: the runner took no Ctrl-C
        with _sigterm_cancels_the_loop():
            yield
        return
    handled = 0

    def first_only(signum: int, frame: FrameType | None) -> None:
        nonlocal handled
        handled += 1
        if handled == 1:
            ctrl_c(signum, frame)

    signal.signal(signal.SIGINT, first_only)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, ctrl_c)  # the runner puts Python's default back only over its own handler


_cancel_the_loop: Callable[[], None] | None = None  # what a SIGTERM does inside the event loop of a background job


@contextlib.contextmanager
def _sigterm_cancels_the_loop() -> Iterator[None]:
    """Inside the event loop of a process that ignores Ctrl-C: a first SIGTERM cancels the running trials.

    That is what asyncio's runner does on a first Ctrl-C, which it takes over only from
    Python's own handler; a KeyboardInterrupt raised wherever the loop was (a trial reading
    its trace, anyio's bookkeeping) ended in a traceback or exit 1. The run then stops as
    from a Ctrl-C (:func:`was_stopped` tells the cancellation apart); later SIGTERMs add nothing.
    """
    global _cancel_the_loop
    task = asyncio.current_task()
    if task is None:
        yield
        return
    cancelled = False

    def cancel() -> None:
        nonlocal cancelled
        if not cancelled:
            cancelled = True
            task.cancel()

    outer, _cancel_the_loop = _cancel_the_loop, cancel
    try:
        yield
    finally:
        _cancel_the_loop = outer


def _deliver_as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    handler = signal.getsignal(signal.SIGINT)
    if handler == signal.SIG_IGN:  # a shell's background job ignores Ctrl-C; SIGTERM must still stop it
        if _cancel_the_loop is not None:
            _cancel_the_loop()
            return
        handler = signal.default_int_handler
    _deliver(handler, signum, frame)


def _deliver(handler: signal._HANDLER, signum: int, frame: FrameType | None) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler != signal.SIG_IGN:
        raise KeyboardInterrupt


def the_reason(exc: BaseException) -> BaseException:
    """What stopped a round (a Ctrl-C, a build that cannot be served, a failed write), out of its task group.

    A cancellation by a stop signal (SIGTERM to a background job: :mod:`harness.interrupts`) is a Ctrl-C.
    """
    if isinstance(exc, asyncio.CancelledError) and was_stopped():
        return KeyboardInterrupt()
    if isinstance(exc, BaseExceptionGroup):
        for kind in (KeyboardInterrupt, HarnessError):
            found = exc.subgroup(lambda e: isinstance(e, kind))  # noqa: B023 - used at once
            if found is not None:
                return the_reason(found.exceptions[0])
    return exc
