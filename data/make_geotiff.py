"""Make data/landsat_rgb.tif: a 256 x 320 crop of rasterio's tests/data/RGB.byte.tif (see
data/SOURCES.md), written as a Cloud-Optimized GeoTIFF with 128 x 128 tiles.

    python data/make_geotiff.py path/to/RGB.byte.tif
"""

from __future__ import annotations

import sys
from pathlib import Path

import rasterio
from rasterio.windows import Window

WINDOW = Window(col_off=0, row_off=200, width=320, height=256)  # the scene's left edge: nodata included


def main(src_path: str) -> None:
    out = Path(__file__).resolve().parent / "landsat_rgb.tif"
    with rasterio.open(src_path) as src:
        data = src.read(window=WINDOW)
        profile = dict(src.profile)
        profile.update(
            driver="COG", width=WINDOW.width, height=WINDOW.height, transform=src.window_transform(WINDOW),
            blocksize=128, compress="deflate", overviews="none",
        )
        for k in ("blockxsize", "blockysize", "tiled", "interleave"):
            profile.pop(k, None)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
