"""The one place that imports numba and compiles the kernels.

numba is optional: without it (or with ``PIPELINE_KERNEL=numpy``, which forces the numpy
reference path for benchmarks) :data:`AVAILABLE` is False, nothing is compiled and callers keep
the numpy path.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence
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
    instead of a per-element check that keeps the loop from vectorising).  Does nothing without
    numba."""
    if not AVAILABLE:
        return
    assert numba is not None
    for name in inline:
        namespace[name] = numba.njit(inline="always")(namespace[name])
    jit = numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
    for name in names:
        namespace[name] = jit(namespace[name])
