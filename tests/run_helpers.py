"""The reliability scenario shared by the runner and batch tests: a 132 x 132 uint8 pair in
33 x 33 chunks, processed in 12 x 12 blocks (121 blocks: long enough to be stopped midway), the
config that runs it, and the resume ledger's count of done blocks."""

from __future__ import annotations

import re
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


def record_files(out: Path) -> list[Path]:
    """The ledger's record files (``done/t.<i>.<j>.<token>.log``: one per task)."""
    d = done_dir(out)
    return sorted(p for p in d.iterdir() if p.name.startswith("t.") and p.name.endswith(".log")) if d is not None else []


def done_blocks(out: Path) -> set[tuple[int, ...]]:
    """The blocks the ledger records, read as docs/operations.md describes it (not through the
    ledger's code): each line ``<i>.<j>`` ended by a newline in a record file, and each empty file
    ``done/<i>.<j>`` (earlier versions); a last line without its newline is not a record."""
    d = done_dir(out)
    if d is None:
        return set()
    found = {tuple(int(x) for x in p.name.split(".")) for p in d.iterdir() if re.fullmatch(r"\d+\.\d+", p.name)}
    for p in record_files(out):
        data = p.read_bytes()
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            if re.fullmatch(rb"\d+\.\d+", line):
                found.add(tuple(int(x) for x in line.split(b".")))
    return found


def n_done(out: Path) -> int:
    return len(done_blocks(out))
