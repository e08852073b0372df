"""The two kernel paths the numeric tests run on: ``numba`` (the compiled kernels, the default) and
``numpy`` (what ``PIPELINE_KERNEL=numpy`` or a machine without numba gives: ``kernels.py`` and
numpy's evaluation of the expression).

``kernel_path("numpy")`` sets ``AVAILABLE`` to False in every loaded ``pipeline`` module that has
it (as the environment variable does at import time; the dispatch reads it at each call), and makes
the compiled entry points raise, so that a test that still reaches them fails.  Every module of
the package is imported first, so that none is imported (and decides without numba) on that path.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

KERNELS = ("numba", "numpy")

#: (module, function) of every compiled entry point the dispatch calls
_COMPILED = (("pipeline.kernels.fastwin", "plane_stats"), ("pipeline.kernels.fastsum", "window_sum_2d"), ("pipeline.kernels.fastsum", "fused_window_sum"))


def _compiled_called(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise AssertionError("a compiled kernel was called on the numpy path")


def _import_all() -> None:
    """Import every module of the package now: one imported on the numpy path would keep its
    compiled functions off (they are decided at import time) after the path is left."""
    import pipeline

    for info in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional dependency
            pass


@contextmanager
def kernel_path(name: str) -> Iterator[None]:
    """Run the block on the kernel path ``name`` (``numba`` is skipped where numba is missing)."""
    _import_all()
    from pipeline.kernels import fastsum

    if name == "numba":
        if not fastsum.AVAILABLE:
            pytest.skip("numba not installed")
        yield
        return
    assert name == "numpy", name
    with pytest.MonkeyPatch.context() as mp:
        for mod in [m for n, m in sys.modules.items() if n == "pipeline" or n.startswith("pipeline.")]:
            if isinstance(getattr(mod, "AVAILABLE", None), bool):
                mp.setattr(mod, "AVAILABLE", False)
        for mod, fn in _COMPILED:
            mp.setattr(f"{mod}.{fn}", _compiled_called)
        yield


@pytest.fixture(params=KERNELS)
def each_kernel_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """A test run once on each kernel path; the fixture's value is the path's name."""
    with kernel_path(request.param):
        yield request.param
