"""``pipeline`` (its arguments follow) with a hold for fault tests: ``python tests/held_run.py run cfg``.

With ``PIPELINE_TEST_HOLD_AFTER=N`` in the environment, the block writes (sharded outputs: the
shard writes) after the first N of this process wait (before writing anything) until the run's SIGTERM/SIGINT handler has run: a
test can kill or stop the run at any moment up to then and the run can never finish first,
however fast the machine.  Once the handler has run, the held writes go on (blocks in flight)
and no new block starts.  Without the variable this is plain ``pipeline``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from pipeline.cli.main import app
from pipeline.execution import assemble, engine

_stopping = threading.Event()
_lock = threading.Lock()
_started = [0]
_signal, _write, _write_shard = signal.signal, engine.write, assemble.write_shard


def _seen(handler):  # type: ignore[no-untyped-def]
    def seen(signum, frame):  # type: ignore[no-untyped-def]
        _stopping.set()
        return handler(signum, frame)

    return seen


def _watching_signal(signum, handler):  # type: ignore[no-untyped-def]
    """``signal.signal``, the run's SIGTERM/SIGINT handlers wrapped to release the held writes."""
    if signum in (signal.SIGTERM, signal.SIGINT) and callable(handler):
        handler = _seen(handler)
    return _signal(signum, handler)


def _held(write):  # type: ignore[no-untyped-def]
    def held(*args, **kwargs):  # type: ignore[no-untyped-def]
        with _lock:
            _started[0] += 1
            mine = _started[0]
        if mine > _HOLD_AFTER:
            _stopping.wait()
        return write(*args, **kwargs)

    return held


_HOLD_AFTER = int(os.environ.get("PIPELINE_TEST_HOLD_AFTER", "-1"))
if _HOLD_AFTER >= 0:
    signal.signal = _watching_signal
    engine.write = _held(_write)
    assemble.write_shard = _held(_write_shard)

if __name__ == "__main__":
    sys.argv = ["pipeline", *sys.argv[1:]]
    app()
