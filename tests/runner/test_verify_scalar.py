"""``pipeline verify`` on an input converted by rioxarray: its scalar ``spatial_ref`` variable (a
CF grid mapping whose value zarr does not store) is no "not stored" alarm; the image's own
unstored chunks still are."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from pipeline.cli.main import app

rioxarray = pytest.importorskip("rioxarray")


def test_spatial_ref_is_no_false_alarm(tmp_path):
    import xarray as xr

    img = np.arange(16 * 16, dtype=np.float32).reshape(16, 16) + 1
    da = xr.DataArray(img, dims=("y", "x"), coords={"y": np.arange(16.0), "x": np.arange(16.0)}, name="band")
    da = da.rio.write_crs("EPSG:32633")
    da.to_dataset().to_zarr(tmp_path / "in.zarr", zarr_format=3, consolidated=False, mode="w", encoding={"band": {"chunks": (8, 8)}})
    g = zarr.open_group(tmp_path / "in.zarr", mode="r")
    assert g["spatial_ref"].shape == () and not list((tmp_path / "in.zarr" / "spatial_ref").glob("c*"))  # not stored
    res = CliRunner().invoke(app, ["verify", str(tmp_path / "in.zarr")])
    assert res.exit_code == 0, res.output
    assert "not stored" not in res.output, res.output
    assert "spatial_ref: 0 of 1 chunks stored and readable, 0 damaged, 0 missing" in res.output, res.output
    # a chunk of the image itself that is not stored is still reported
    (tmp_path / "in.zarr" / "band" / "c" / "1" / "1").unlink()
    res = CliRunner().invoke(app, ["verify", str(tmp_path / "in.zarr")])
    assert res.exit_code == 0 and "not stored band/c/1/1" in res.output, res.output
