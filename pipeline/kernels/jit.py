"""The one place that imports numba and compiles the kernels.

numba is optional: without it (or with ``PIPELINE_KERNEL=numpy``, which forces the numpy
reference path for benchmarks) :data:`AVAILABLE` is False, nothing is compiled and callers keep
the numpy path.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

numba: ModuleType | None  # None without numba
try:  # pragma: no cover - exercised by whether numba is installed
    if os.environ.get("PIPELINE_KERNEL", "") == "numpy":
        raise ImportError("PIPELINE_KERNEL=numpy")
    import numba

    AVAILABLE = True
except Exception:  # noqa: BLE001 - any import failure means: use the numpy path
    numba = None
    AVAILABLE = False


def compile_into(namespace: MutableMapping[str, Any], names: Sequence[str], inline: Sequence[str] = ()) -> None:
    """Replace the functions ``inline`` (always inlined: small helpers whose loop-invariant
    branches are then hoisted) and ``names`` (in this order: callees first) of a module's
    ``namespace`` by their compiled versions: ``nogil`` so that threads run in parallel, cached
    on disk, no bounds checks, numpy's error model (a float division by zero gives inf/NaN
    instead of a per-element check that keeps the loop from vectorising; the cache only in a
    folder no other user could swap).  Does nothing without numba."""
    if not AVAILABLE:
        return
    assert numba is not None
    for name in inline:
        namespace[name] = numba.njit(inline="always")(namespace[name])
    jit = numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
    for name in names:
        namespace[name] = _trusted_cache(jit(namespace[name]))


_warned: set[str] = set()


def _trusted_cache(dispatcher: Any) -> Any:
    """``dispatcher`` with numba's on-disk cache (pickles it loads and runs) only where no other
    user could swap its folder or one above it (:func:`pipeline.storage.kernelcache.untrusted`, the
    nearest existing folder of the path numba chose); otherwise compiled in memory, with a
    warning once per reason."""
    from numba.core.caching import NullCache

    from pipeline.storage import kernelcache

    path = getattr(getattr(dispatcher, "_cache", None), "_cache_path", None)
    if path is None:
        return dispatcher
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # numba creates the rest, as ours
    why = kernelcache.untrusted(folder)
    if why is not None:
        dispatcher._cache = NullCache()
        if why not in _warned:
            _warned.add(why)
            warnings.warn(f"numba's kernel cache {path} is not used (compiled in memory): {why}", UserWarning, stacklevel=3)
    return dispatcher
