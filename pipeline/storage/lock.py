"""One writer per output: a lock file with the holder's host, pid and a heartbeat.

The lock is a file created with ``O_CREAT | O_EXCL`` (atomic on local filesystems and on NFSv3+),
holding JSON ``{host, pid, token, started}``; its modification time is the heartbeat, refreshed
every :data:`HEARTBEAT_S` seconds by a daemon thread while the run lasts.  A lock is *stale* when
its holder is on this host and its pid is dead (a run killed with ``kill -9``, the OOM killer), or
when its heartbeat is older than the timeout (``PIPELINE_LOCK_TIMEOUT`` seconds, default
:data:`STALE_AFTER_S`: a holder on another host that died).  A stale lock is taken over; the
takeover is serialised by ``flock`` on a guard file and re-checks the holder's token, so two runs
racing for a stale lock cannot both win.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pipeline.errors import LockedError, OutputError

HEARTBEAT_S = 5.0
STALE_AFTER_S = 120.0


def _timeout() -> float:
    try:
        return float(os.environ.get("PIPELINE_LOCK_TIMEOUT", STALE_AFTER_S))
    except ValueError:
        return STALE_AFTER_S


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def parse_holder(text: str | bytes) -> dict[str, Any]:
    """The holder a lock's text records; ``{}`` for a record half-written by a killed holder
    (judged by its age alone)."""
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def read_lock(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The holder recorded in a lock file (with its heartbeat age), or None if there is none."""
    p = Path(path)
    try:
        text = p.read_text()
        age = time.time() - p.stat().st_mtime
    except FileNotFoundError:
        return None
    info = parse_holder(text)
    info["age"] = age
    return info


def is_stale(info: dict[str, Any]) -> bool:
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
        if not _pid_alive(info["pid"]):
            return True
    if not info.get("token") and info["age"] > 10:  # an empty/garbled file left by a crash
        return True
    return info["age"] > _timeout()


class OutputLock:
    """``with OutputLock(path, what):`` holds the lock at ``path`` for the block's duration."""

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self.path = Path(path)
        self.what = what
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False  #: set when another run took the lock over (our heartbeat stopped too long)

    # -- acquire / release ---------------------------------------------------------------------

    def _create(self) -> bool:
        info = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token, "started": time.time()}
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            raise OutputError(f"cannot create the lock file {self.path}: {e.strerror}", where="output.path") from None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(info))
        return True

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create the lock directory {self.path.parent}: {e.strerror}", where="output.path") from None
        for _ in range(3):
            if self._create():
                break
            info = read_lock(self.path)
            if info is None:
                continue  # released between our two looks
            if not is_stale(info):
                raise LockedError(
                    f"{self.what} is being written by another run (host {info.get('host', '?')}, pid {info.get('pid', '?')}, "
                    f"heartbeat {info['age']:.0f} s ago); lock file {self.path}",
                    where="output.path",
                )
            if self._take_over(info):
                break
        else:
            raise LockedError(f"{self.what}: could not take the lock {self.path} (contended)", where="output.path")
        self._thread = threading.Thread(target=self._beat, name="pipeline-lock-heartbeat", daemon=True)
        self._thread.start()

    def _take_over(self, stale: dict[str, Any]) -> bool:
        guard = self.path.with_name(self.path.name + ".guard")
        with open(guard, "a") as g:
            fcntl.flock(g, fcntl.LOCK_EX)
            try:
                now = read_lock(self.path)
                if now is not None:
                    if now.get("token") != stale.get("token") or not is_stale(now):
                        return False  # someone else took it over first
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
                return self._create()
            finally:
                fcntl.flock(g, fcntl.LOCK_UN)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            info = read_lock(self.path)
            if info is None or info.get("token") != self.token:
                self.lost = True
                return
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        info = read_lock(self.path)
        if info is not None and info.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self.path.parent)  # only if empty: a refused run leaves nothing behind

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

