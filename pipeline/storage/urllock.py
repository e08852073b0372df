"""One writer per output on object storage: a lock object created only if absent.

S3 (and GCS and Azure) refuse a PUT with ``If-None-Match: *`` when the key exists; s3fs sends it
for ``pipe_file(..., mode="create")`` and raises ``FileExistsError`` on the refusal.  The lock is
the object ``<output>.pipeline/lock`` holding JSON ``{host, pid, token, started}``; its
``LastModified`` is the heartbeat, rewritten (unconditionally, by its holder only) every
:data:`pipeline.storage.lock.HEARTBEAT_S` seconds.  A lock whose heartbeat is older than the
timeout (``PIPELINE_LOCK_TIMEOUT``, default :data:`pipeline.storage.lock.STALE_AFTER_S`) is stale:
it is deleted and created again if absent, so of two runs taking over one stale lock only one
creates it.  (Between a taker's look and its delete another taker may have deleted and created
it; that window is one round trip, and a holder that finds the lock not its own stops.)

Only backends known to send the condition take the lock (:func:`conditional`: s3fs).  Elsewhere
(gcsfs, adlfs, other fsspec backends, which may write the object unconditionally) there is no lock,
as before: two runs of one config at once write the same bytes to the same keys, duplicating work,
and runs of different configs are refused by the output's fingerprint.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from pipeline.errors import LockedError
from pipeline.storage.lock import HEARTBEAT_S, _timeout, parse_holder


def _fs(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(url, **dict(storage_options or {}))


def conditional(fs: Any) -> bool:
    """Whether ``fs.pipe_file(path, data, mode="create")`` is a create-if-absent on the store
    (s3fs sends ``If-None-Match: *``); other backends are not trusted to."""
    return type(fs).__module__.split(".")[0] == "s3fs"


def read(fs: Any, path: str) -> dict[str, Any] | None:
    """The holder recorded in the lock object (with its heartbeat age), or None if there is none."""
    try:
        text = fs.cat_file(path)
        modified = fs.info(path).get("LastModified")
    except FileNotFoundError:
        return None
    info = parse_holder(text)
    info["age"] = time.time() - modified.timestamp() if modified is not None else 0.0
    return info


def holder(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The live holder of the lock object at ``url`` (None: no lock, a stale one, or a store
    without the condition, where no run takes it)."""
    fs, path = _fs(url, storage_options)
    if not conditional(fs):
        return None
    info = read(fs, path)
    return info if info is not None and info["age"] <= _timeout() else None


class ObjectLock:
    """``with ObjectLock(url, storage_options, what):`` holds the lock object at ``url``."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None, what: str) -> None:
        self.url = url
        self.what = what
        self.fs, self.path = _fs(url, storage_options)
        self.token = uuid.uuid4().hex
        self.started = time.time()
        self.held = False  #: whether the store offered the lock (see :func:`conditional`)
        self.lost = False  #: set when another run took the lock over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token, "started": self.started}).encode()

    def _create(self) -> bool:
        try:
            self.fs.pipe_file(self.path, self._body(), mode="create")
        except FileExistsError:
            return False
        self.fs.invalidate_cache(self.path)
        return True

    def acquire(self) -> None:
        if not conditional(self.fs):
            return
        for _ in range(3):
            if self._create():
                break
            info = read(self.fs, self.path)
            if info is None:
                continue  # released between our two looks
            if info["age"] <= _timeout():
                raise LockedError(
                    f"{self.what} is being written by another run (host {info.get('host', '?')}, pid {info.get('pid', '?')}, "
                    f"heartbeat {info['age']:.0f} s ago); lock object {self.url}",
                    where="output.path",
                )
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path)  # stale: whoever creates it next holds it
        else:
            raise LockedError(f"{self.what}: could not take the lock {self.url} (contended)", where="output.path")
        self.held = True
        self._thread = threading.Thread(target=self._beat, name="pipeline-urllock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                info = read(self.fs, self.path)
                if info is None or info.get("token") != self.token:
                    self.lost = True
                    return
                self.fs.pipe_file(self.path, self._body())

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if not self.held:
            return
        info = read(self.fs, self.path)
        if info is not None and info.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path)

    def __enter__(self) -> ObjectLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
