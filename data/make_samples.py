"""Write data/samples.zarr: tiny generated images for the example configs in configs/.

- ``image``: float32 (48, 64), a smooth gradient with a textured square and unit noise
  (configs/local_variance.yaml);
- ``t0``, ``t1``: uint16 (48, 64), two acquisition dates of one scene; ``t1`` has a changed
  patch (configs/change_detection.yaml);
- ``dem``: int16 (48, 64) elevations with nodata -9999 (a hole and a ragged border)
  (configs/masked_mean.yaml).

Deterministic (fixed seed).  Run from the repository root: python data/make_samples.py
"""

from pathlib import Path

import numpy as np
import zarr

SHAPE = (48, 64)


def samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261125)
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    image = 100 + 0.5 * x + rng.standard_normal(SHAPE)
    image[10:26, 20:36] += 20 * rng.standard_normal((16, 16))
    t0 = (1000 + 10 * y + rng.integers(0, 50, SHAPE)).astype(np.uint16)
    t1 = (t0.astype(np.int64) + rng.integers(-5, 6, SHAPE)).clip(0, 65535).astype(np.uint16)
    t1[30:40, 40:52] += 3000  # something changed here
    dem = (500 + 3 * y - 2 * x + rng.integers(-4, 5, SHAPE)).astype(np.int16)
    dem[15:22, 8:20] = -9999  # a hole larger than the window
    dem[:, -1] = -9999  # a ragged border
    dem[::7, -3] = -9999
    return {"image": image.astype(np.float32), "t0": t0, "t1": t1, "dem": dem}


if __name__ == "__main__":
    path = Path(__file__).with_name("samples.zarr")
    group = zarr.open_group(path, mode="w", attributes={"description": "tiny samples for configs/ (data/make_samples.py)"})
    for name, data in samples().items():
        arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(32, 32), dimension_names=("y", "x"))
        arr[...] = data
    print(f"wrote {path}")
