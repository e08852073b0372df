"""What an output target is, whatever the format: the :class:`OutputArray` description, the
:class:`OutputTarget` protocol, the reserved staging suffixes, and the crash-test hook
:func:`checkpoint`.  The formats (:mod:`pipeline.storage.targets.zarr`) import this module, and
:mod:`pipeline.storage.targets` re-exports it beside the format registry."""


from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: Suffixes of a replacement (``--overwrite``) being staged and of the old output while it is
#: swapped out (the Zarr target's ``out.zarr.pipeline/store.pipeline-new``; earlier versions staged
#: arrays inside the store as ``result.pipeline-new``): reserved, never an output array's name.
STAGED, RETIRED = ".pipeline-new", ".pipeline-old"


@dataclass(frozen=True)
class OutputArray:
    """What an output array is, whatever the format: its grid, dtype and fill value, its
    dimension names and attributes, and the variables beside it (1-D coordinates by dimension,
    0-D variables such as the CRS: name -> (value, attributes))."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    dims: tuple[str, ...]
    attrs: Mapping[str, Any]
    coords: Mapping[str, np.ndarray] = field(default_factory=dict)
    scalars: Mapping[str, tuple[Any, Mapping[str, Any]]] = field(default_factory=dict)
    fill_value: Any = 0
    shards: tuple[int, ...] | None = None  #: Zarr v3 shard shape (whole chunks), None: unsharded


@runtime_checkable
class OutputTarget(Protocol):
    """One output store of a run.  ``handle`` below is what :meth:`create_array` / :meth:`open_array`
    return for one array (for Zarr, a ``zarr.Array``); the engine writes blocks through
    :meth:`writer` and :meth:`write_block`."""

    path: str  #: the store path or URL, as configured
    storage_options: Mapping[str, Any] | None

    @property
    def can_swap(self) -> bool:
        """Whether a replacement can be written beside the old output and swapped in at the end
        (:meth:`swap`); otherwise the old output is replaced from the start."""
        ...
    def location(self, array: str | None) -> str:
        """How an array of this store is named in messages."""
        ...
    def check_path(self) -> None:
        """Refuse a path this format cannot write into; called before anything is written."""
        ...
    def state(self, array: str) -> dict[str, Any] | None:
        """The array's ``pipeline`` state attribute, read fresh (``{}`` without one; None: no
        such array)."""
        ...
    def finalized_state(self, array: str) -> dict[str, Any] | None:
        """The state readers see after :meth:`finalize` (Zarr: in the consolidated metadata; None:
        unknown)."""
        ...
    def create_array(self, array: str, spec: OutputArray, *, overwrite: bool = False) -> Any:
        """Create the (empty) output array ``spec`` with its coordinates and 0-D variables;
        ``overwrite`` replaces an existing one."""
        ...
    def open_array(self, array: str, mode: str = "r+") -> Any:
        """An existing output array, to resume writing (or read, ``mode="r"``)."""
        ...
    def update_state(self, handle: Any, **changes: Any) -> None:
        """Update keys of the array's state attribute (``complete=True`` is written last)."""
        ...
    def check_coords(
        self, coords: Mapping[str, np.ndarray], *, overwrite: bool, scalars: Mapping[str, tuple[Any, Mapping[str, Any]]] | None = None
    ) -> list[str]:
        """The coordinates that must be (re)written; refuses (raises) before anything is written,
        also a 0-D variable of ``scalars`` (name -> (value, attributes)) the tool did not write."""
        ...
    def stored_chunk_keys(self, handle: Any) -> set[str]:
        """Keys of the chunks actually stored (for resume)."""
        ...
    def chunk_key(self, handle: Any, coords: Sequence[int]) -> str: ...
    def writer(self, handle: Any) -> Any:
        """What a worker writes blocks through (``handle``, or a mapping of them, or a faster
        writer of the same); built in the process that writes."""
        ...
    def write_block(self, writer: Any, region: tuple[slice, ...], block: np.ndarray) -> None:
        """Write one chunk-aligned block."""
        ...
    def finalize(self) -> None:
        """Make the store readable as a whole (Zarr: consolidated metadata)."""
        ...
    def staged(self, *, fresh: bool) -> OutputTarget:
        """Where a replacement is written until it is swapped in (only where :attr:`can_swap`):
        another target of the same format; ``fresh``: emptied first.  Refuses (raises) a staging
        place the tool did not make, before anything is computed."""
        ...
    def swap(self, fingerprint: str) -> None:
        """Swap the complete staged replacement (:meth:`staged`, every array marked complete with
        ``fingerprint``) in place of the output, as one unit: readers see all of the old output or
        all of the new one."""
        ...
    def recover(self) -> None:
        """Complete a swap interrupted by a crash (called first by every run, under its lock)."""
        ...


def checkpoint(label: str) -> None:
    """One step of a swap (:meth:`OutputTarget.swap`) or of marking an output complete.  Test hook:
    with ``PIPELINE_TEST_SWAP_KILL=<n>:<SIGNAL>`` (``3:KILL``, ``3:TERM``) this process sends
    itself the signal right after the n-th step, and with ``PIPELINE_TEST_SWAP_LOG=<file>`` each
    step's label is appended to that file: the tests kill a real run at every step."""
    log = os.environ.get("PIPELINE_TEST_SWAP_LOG")
    if log:
        with open(log, "a") as f:
            f.write(label + "\n")
    spec = os.environ.get("PIPELINE_TEST_SWAP_KILL")
    if not spec:
        return
    _steps.append(label)
    n, sig = spec.split(":")
    if len(_steps) == int(n):
        os.kill(os.getpid(), getattr(signal, "SIG" + sig))


_steps: list[str] = []  #: the steps taken by this process (for the test hook)
