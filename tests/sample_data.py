"""The shipped sample data as its generating script makes it (data/make_samples.py), for the
tests that run the example configs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def samples() -> dict[str, np.ndarray]:
    """Every sample array by name, regenerated (not read from data/samples.zarr)."""
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "data" / "make_samples.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.samples()
