"""The reliability scenario shared by the runner and batch tests: a 132 x 132 uint8 pair in
33 x 33 chunks, processed in 12 x 12 blocks (121 blocks: long enough to be stopped midway), the
config that runs it, and the resume ledger's count of done blocks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml
import zarr

from pipeline.storage import ledger

SHAPE = (132, 132)  # processing blocks of 12x12: 11 x 11 = 121 blocks
W = 5


def make_inputs(root: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, SHAPE, dtype=np.uint8)
    b = rng.integers(0, 256, SHAPE, dtype=np.uint8)
    g = zarr.open_group(root / "in.zarr", mode="w")
    for name, arr in (("a", a), ("b", b)):
        g.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(33, 33), dimension_names=("y", "x"))[...] = arr
    return a, b


def write_config(root: Path, out: str, name: str | None = None, **extra) -> Path:
    cfg = {
        "inputs": {"a": {"path": "in.zarr", "array": "a"}, "b": {"path": "in.zarr", "array": "b"}},
        "op": "a**2 - b**2",
        "window": {"size": W},
        "output": {"path": out},
        "compute": {"chunks": 12, "workers": 2},
    }
    for k, v in extra.items():
        cfg[k] = v
    path = root / (name or f"{Path(out).stem}.yaml")
    path.write_text(yaml.safe_dump(cfg))
    return path


def done_dir(out: Path) -> Path | None:
    dirs = list(ledger.sidecar(out).glob("result/*/done"))
    return dirs[0] if dirs else None


def n_done(out: Path) -> int:
    d = done_dir(out)
    return len(os.listdir(d)) if d is not None else 0
