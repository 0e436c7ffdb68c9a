"""Signals, the one home of rnnlab's handlers: Ctrl-C and SIGTERM deferred over a write that must not be cut,
and SIGTERM raised as an interruption (``Terminated``) where Ctrl-C would raise KeyboardInterrupt.

Used by run records (their writes and file locks), the entry points (``rnnlab.app.setup``) and the study.
Stdlib and ``rnnlab.errors`` only.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import sys
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


_blocks = [0]  # how many interruptible blocks have begun or ended: a re-sent SIGTERM is for its own block only


def _swallowed(unraisable: Any) -> None:
    """``sys.unraisablehook`` within ``interruptible``. Python swallows an exception raised in a finalizer or a
    callback from C (a garbage-collection callback, ``__del__``), printing "Exception ignored in" with a
    traceback. A SIGTERM whose handler ran there would be lost and the command would go on (a sweep once did,
    for a minute): it is sent again, from another thread a moment later (handled in this hook it would be
    swallowed again), to land in the interrupted code. A Ctrl-C there is remembered (``ctrl_c_received``).
    Neither prints; other errors go to the hook this one stands in for."""
    error = unraisable.exc_value
    if isinstance(error, Terminated):
        block = _blocks[0]
        threading.Timer(0.05, _terminate_again, (block,)).start()
    elif not (isinstance(error, KeyboardInterrupt) and _ctrl_c):
        _hooks_replaced[-1](unraisable)


def _terminate_again(block: int) -> None:
    if _blocks[0] == block:  # still the block the signal came in
        _thread.interrupt_main(signal.SIGTERM)


_hooks_replaced: list[Any] = [sys.__unraisablehook__]  # the hooks _swallowed stands in for


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
    _blocks[0] += 1
    previous_hook = sys.unraisablehook
    if previous_hook is not _swallowed:
        _hooks_replaced.append(previous_hook)
        sys.unraisablehook = _swallowed
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
        _blocks[0] += 1
        if previous_hook is not _swallowed:
            sys.unraisablehook = _hooks_replaced.pop()
        _ctrl_c.clear()
