"""Write data/seed.zarr: the founding example's 6x6 uint8 pair (shared/seed/), arrays a and b.

Run from the repository root: python data/make_seed.py
"""

from pathlib import Path

import numpy as np
import zarr

A = np.array(
    [
        [179, 97, 77, 118, 144, 105],
        [68, 56, 184, 210, 141, 230],
        [178, 166, 218, 47, 106, 172],
        [38, 183, 50, 185, 48, 87],
        [60, 200, 228, 232, 6, 190],
        [253, 75, 231, 166, 117, 134],
    ],
    dtype=np.uint8,
)
B = np.array(
    [
        [116, 95, 94, 220, 80, 223],
        [135, 9, 166, 78, 5, 129],
        [102, 167, 120, 81, 141, 29],
        [83, 117, 81, 129, 255, 48],
        [130, 231, 165, 7, 187, 169],
        [44, 137, 16, 50, 229, 202],
    ],
    dtype=np.uint8,
)

if __name__ == "__main__":
    path = Path(__file__).with_name("seed.zarr")
    group = zarr.open_group(path, mode="w", attributes={"description": "founding example (shared/seed)"})
    for name, data in (("a", A), ("b", B)):
        arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(4, 4), dimension_names=("y", "x"))
        arr[...] = data
    print(f"wrote {path}")
