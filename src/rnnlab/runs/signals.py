"""Signals, the one home of rnnlab's handlers: Ctrl-C and SIGTERM deferred over a write that must not be cut,
and SIGTERM raised as an interruption (``Terminated``) where Ctrl-C would raise KeyboardInterrupt.

Used by run records (their writes and file locks), the entry points (``rnnlab.app.setup``) and the study.
Stdlib and ``rnnlab.errors`` only.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from rnnlab.errors import Terminated


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """In the main thread, SIGINT and SIGTERM arriving inside the block take effect as it ends (re-raised,
    so their own handlers run then: Ctrl-C still interrupts, a few milliseconds later). In other threads,
    where Python runs no signal handlers, the block runs as it is."""
    if not _main_thread():
        yield
        return
    caught: list[int] = []
    previous: dict[int, Any] = {}
    ended = False

    def defer(signum: int, frame: Any) -> None:
        if not ended:
            caught.append(signum)
            return
        # Left installed by a signal that landed while the handlers were being restored: act as the handler
        # it replaced would have.
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)
        elif handler != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    try:
        # Inside the try: a signal handled before both are swapped still gets the first one restored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, defer)
        yield
    finally:
        ended = True
        for swapped, handler in previous.items():
            signal.signal(swapped, handler if handler is not None else signal.SIG_DFL)
        for number in caught:
            signal.raise_signal(number)


_ctrl_c: list[int] = []  # Ctrl-Cs received inside interruptible's block


def _raise_interrupt(signum: int, frame: Any) -> None:
    """SIGINT's handler: Python's own (KeyboardInterrupt), remembered: one raised where Python swallows
    exceptions (a finalizer, a callback from C) is otherwise lost, and the run would train on."""
    _ctrl_c.append(signum)
    raise KeyboardInterrupt


def ctrl_c_received() -> bool:
    """Whether Ctrl-C came inside ``interruptible``'s block (the run must stop, even if its
    KeyboardInterrupt was swallowed: ``rnnlab.app.session`` raises it again at the next batch)."""
    return bool(_ctrl_c)


def raise_terminated(signum: int, frame: Any) -> None:
    """SIGTERM's handler: raises ``Terminated`` where Ctrl-C would raise KeyboardInterrupt; not while a handler
    that calls this one along (Lightning's, in fit) is installed over it: that one stops the run its own way."""
    if signal.getsignal(signal.SIGTERM) is raise_terminated:
        raise Terminated(f"signal {signum} (SIGTERM)")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block both interruptions end the work the same way: SIGTERM (``kill``, SLURM's scancel)
    raises ``Terminated`` (a KeyboardInterrupt) in the main thread where Ctrl-C raises KeyboardInterrupt, so
    every clean-up that runs for Ctrl-C runs for it (``RunRecord.guard`` records the run as interrupted), and
    Ctrl-C is remembered (``ctrl_c_received``: one that Python swallowed still stops the run). The previous
    handlers are restored afterwards. Outside the main thread (where handlers cannot be set) it does nothing."""
    if not _main_thread():
        yield
        return
    _ctrl_c.clear()
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    # Ctrl-C as Python's own handler does it, remembered (ctrl_c_received); a handler set by someone else stays.
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)
        _ctrl_c.clear()
