"""Stopping on Ctrl-C or SIGTERM at a safe point.

Raising KeyboardInterrupt from a signal handler lands wherever Python happens to be: inside a
database commit, or in a weakref callback where it is silently ignored. So the first signal only
sets a flag; the trainer checks it after every boosting round and between trials, stops the trial
there (it is re-queued, see `tuning.worker.requeue_interrupted`) and exits. A second signal
interrupts at once, for a process that is stuck."""

from __future__ import annotations

import signal
import threading

_requested = threading.Event()


def _handler(signum, _frame) -> None:
    if _requested.is_set():
        raise KeyboardInterrupt
    _requested.set()


def install() -> None:
    """Handle SIGINT and SIGTERM (SIGINT too: a shell may have started us with it ignored)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raise KeyboardInterrupt here, at a safe point, if a stop was requested."""
    if _requested.is_set():
        raise KeyboardInterrupt("stop requested")


def wait(seconds: float) -> None:
    """Sleep, but wake up (and raise) as soon as a stop is requested."""
    if _requested.wait(seconds):
        raise KeyboardInterrupt("stop requested")
