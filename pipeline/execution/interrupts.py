"""SIGTERM and SIGINT while the driver waits on its block tasks.

The run's signal handler (:func:`pipeline.cli.run._interrupt`) stops a run by raising
``KeyboardInterrupt`` in the main thread.  Raised at an arbitrary point of ``concurrent.futures``,
that exception can leave a future's lock held (``wait`` takes the lock of every future in a
Python loop): the worker thread finishing that future then blocks on it forever, and so does the
pool's shutdown.  So while the driver loop (:func:`pipeline.execution.engine._bounded`) runs, a
handler calls :func:`defer`, which keeps the signal's name instead, and the loop raises it at a
safe point (:func:`check`, after each wait, which returns at least every :data:`POLL_S` seconds).
Nothing else changes: blocks in flight are abandoned, blocks done stay recorded.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

#: longest wait of the driver loop between two checks for a deferred signal (seconds)
POLL_S = 0.25

class _State:
    depth = 0  #: nesting of :func:`deferring` sections in the main thread
    pending: str | None = None  #: a signal kept by :func:`defer`


_state = _State()


def defer(name: str) -> bool:
    """For a signal handler: True if the main thread is in a :func:`deferring` section, where
    the signal ``name`` is kept for its next :func:`check`; False: the handler acts now."""
    if _state.depth and threading.current_thread() is threading.main_thread():
        _state.pending = _state.pending or name
        return True
    return False


def check() -> None:
    """Raise ``KeyboardInterrupt`` for a signal kept by :func:`defer` (once)."""
    name, _state.pending = _state.pending, None
    if name is not None:
        raise KeyboardInterrupt(name)


@contextlib.contextmanager
def deferring() -> Iterator[None]:
    """A section of the main thread in which signals are kept (:func:`defer`); a signal kept
    and not yet raised is raised on leaving it, also over an exception in flight (a stop the
    user asked for wins).  Other threads: no effect."""
    main = threading.current_thread() is threading.main_thread()
    if main:
        _state.depth += 1
    try:
        yield
    finally:
        if main:
            _state.depth -= 1
            if not _state.depth:
                check()
