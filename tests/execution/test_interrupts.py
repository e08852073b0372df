"""SIGTERM/SIGINT while the driver waits on block tasks (:mod:`pipeline.execution.interrupts`): the
run's handler keeps the signal and the driver loop raises it between two waits, never inside
``concurrent.futures`` (whose locks it could leave held, hanging the pool's shutdown)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from pipeline.cli.run import _interrupt
from pipeline.execution import engine, interrupts


@pytest.fixture
def alarm():
    """SIGALRM handled by the run's SIGTERM handler, fired after the given seconds."""
    previous = signal.signal(signal.SIGALRM, _interrupt)
    yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_outside_the_driver_loop_the_handler_raises_at_once(alarm):
    alarm(0.05)
    with pytest.raises(KeyboardInterrupt, match="SIGALRM"):
        time.sleep(5)  # interrupted: the handler raised in the sleeping main thread


def test_a_signal_during_the_wait_is_raised_between_waits_and_the_pool_stops(alarm):
    release = threading.Event()
    started: list[int] = []
    results: list[int] = []

    def task(i: int) -> int:
        started.append(i)
        release.wait(10)  # held until the signal came: the wait is on when it arrives
        return i

    def on_signal_then_release(signum, frame):  # the run's handler, then the held tasks go on
        try:
            _interrupt(signum, frame)
        finally:
            release.set()

    signal.signal(signal.SIGALRM, on_signal_then_release)
    alarm(0.1)
    with pytest.raises(KeyboardInterrupt, match="SIGALRM") as caught, ThreadPoolExecutor(max_workers=2) as pool:
        engine._bounded(lambda i: pool.submit(task, i), wait, list(range(100)), 3, results.append)
    last = traceback.extract_tb(caught.value.__traceback__)[-1]
    assert last.name == "check" and last.filename.endswith("interrupts.py")  # a safe point, not inside a wait
    assert len(started) < 100 and len(results) <= len(started)  # it stopped: no new task after the signal
    assert not interrupts.defer("SIGTERM")  # the section is left: the next signal acts at once


def test_a_kept_signal_wins_over_an_error_in_flight():
    with pytest.raises(KeyboardInterrupt, match="SIGTERM") as caught, interrupts.deferring():
        assert interrupts.defer("SIGTERM")
        raise ValueError("a block failed")
    assert isinstance(caught.value.__context__, ValueError)


def test_other_threads_do_not_defer():
    out: list[bool] = []
    with interrupts.deferring():
        t = threading.Thread(target=lambda: out.append(interrupts.defer("SIGTERM")))
        t.start()
        t.join()
    assert out == [False]


STRESS = """
import signal, sys, time
from concurrent.futures import ThreadPoolExecutor, wait
from pipeline.cli.run import _interrupt
from pipeline.execution import engine

signal.signal(signal.SIGALRM, _interrupt)
n, stopped, end = 0, 0, time.monotonic() + 3
while time.monotonic() < end:
    n += 1
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.0005 + (n % 50) * 0.0002)
        with ThreadPoolExecutor(max_workers=2) as pool:
            engine._bounded(lambda i: pool.submit(time.sleep, 0.0001), wait, list(range(400)), 3, lambda r: None)
    except KeyboardInterrupt:
        stopped += 1
    signal.setitimer(signal.ITIMER_REAL, 0)
print(n, stopped)
"""


def test_signals_at_every_moment_of_the_driver_loop_never_hang_the_pool():
    """Thousands of runs of the driver loop, each interrupted at a different moment by the run's
    handler: every pool shuts down.  (Raising at once, as before, hung within 4 s: a worker
    blocked on a future's lock the interrupted ``wait`` left held.)"""
    res = subprocess.run([sys.executable, "-c", STRESS], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    runs, stopped = map(int, res.stdout.split())
    assert runs > 100 and stopped > 100, res.stdout  # the signals did land inside the loop
