"""The Python API's missing pixels and limits are the config's: declared nodata (rioxarray
GeoTIFFs, xarray encoding, zarr attributes), ``numpy.ma`` masks, and the bounds on ``size``,
``weights``, ``cval`` and ``fill_value``.  Every result is checked against a brute force over
every window (:func:`reference.brute_window`)."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import yaml
from reference import brute_window
from typer.testing import CliRunner

import pipeline
from pipeline.cli.main import app
from pipeline.config.load import MAX_WINDOW, load_config


def _float(expected: np.ndarray) -> np.ndarray:
    """A brute-force object array as float64, NaN where a window holds no valid pixel."""
    return np.array([np.nan if v is None else float(v) for v in expected.ravel()]).reshape(expected.shape)


# ------------------------------------------------------------------ declared nodata (issue 21, 3)


def _band(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    band = rng.integers(0, 250, shape).astype(np.uint8)
    band[rng.random(shape) < 0.05] = 255  # scattered nodata
    return band


@pytest.fixture
def geotiffs(tmp_path):
    """Two uint8 GeoTIFF bands with nodata 255 (a's has a 12 x 20 hole), opened by rioxarray as a
    user would (``_FillValue`` 255 in the attrs), with the numbers they hold."""
    rasterio = pytest.importorskip("rasterio")
    rioxarray = pytest.importorskip("rioxarray")
    from rasterio.transform import from_origin

    rng = np.random.default_rng(21)
    shape = (30, 40)
    a, b = _band(rng, shape), _band(rng, shape)
    a[5:17, 10:30] = 255
    opened = {}
    for name, band in (("a", a), ("b", b)):
        with rasterio.open(
            tmp_path / f"{name}.tif", "w", driver="GTiff", height=shape[0], width=shape[1], count=1, dtype="uint8",
            crs="EPSG:32633", transform=from_origin(500000, 4000000, 10, 10), nodata=255,
        ) as f:
            f.write(band, 1)
        opened[name] = rioxarray.open_rasterio(tmp_path / f"{name}.tif").squeeze("band", drop=True)
    assert opened["a"].attrs["_FillValue"] == 255
    return opened, a, b


def _brute_mean(a: np.ndarray, b: np.ndarray, missing: np.ndarray, size: int = 5) -> np.ndarray:
    return _float(brute_window(a.astype(np.int64) - b.astype(np.int64), size, "mean", missing=missing))


def test_api_honours_a_geotiffs_declared_nodata(geotiffs):
    bands, a, b = geotiffs
    got = pipeline.window_reduce("a - b", bands, size=5, reduce="mean")
    expected = _brute_mean(a, b, (a == 255) | (b == 255))
    assert np.isnan(expected).sum() > 50  # the hole leaves windows without a valid pixel
    np.testing.assert_array_equal(got.values, expected)


def test_api_nodata_none_switches_the_declaration_off_and_a_value_replaces_it(geotiffs):
    bands, a, b = geotiffs
    off = pipeline.window_reduce("a - b", bands, size=5, reduce="mean", nodata={"a": None, "b": None})
    np.testing.assert_array_equal(off.values, _brute_mean(a, b, np.zeros(a.shape, bool)))
    mine = pipeline.window_reduce("a - b", bands, size=5, reduce="mean", nodata={"a": 0})
    np.testing.assert_array_equal(mine.values, _brute_mean(a, b, (a == 0) | (b == 255)))


def test_cli_and_api_give_identical_results_on_the_same_geotiffs(geotiffs, tmp_path):
    bands, a, b = geotiffs
    inputs = {}
    for name, da in bands.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # consolidated metadata is not in the v3 spec
            da.to_dataset(name=name).to_zarr(tmp_path / f"{name}.zarr", mode="w", zarr_format=3)
        inputs[name] = {"path": str(tmp_path / f"{name}.zarr"), "array": name}
    cfg = {"inputs": inputs, "op": "a - b", "window": {"size": 5, "reduce": "mean"},
           "output": {"path": str(tmp_path / "out.zarr")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "c.yaml")])
    assert res.exit_code == 0, res.output
    import zarr

    cli = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")["result"][...]
    api = pipeline.window_reduce("a - b", bands, size=5, reduce="mean").values
    np.testing.assert_array_equal(cli, api)
    np.testing.assert_array_equal(api, _brute_mean(a, b, (a == 255) | (b == 255)))


def test_api_honours_the_encoded_fill_of_a_masked_open(geotiffs, tmp_path):
    """``masked=True``: xarray moved ``_FillValue`` into ``.encoding`` and made those pixels NaN."""
    rioxarray = pytest.importorskip("rioxarray")
    _, a, b = geotiffs
    bands = {n: rioxarray.open_rasterio(tmp_path / f"{n}.tif", masked=True).squeeze("band", drop=True) for n in "ab"}
    assert "_FillValue" not in bands["a"].attrs and bands["a"].encoding["_FillValue"] == 255
    got = pipeline.window_reduce("a - b", bands, size=5, reduce="mean")
    np.testing.assert_array_equal(got.values, _brute_mean(a, b, (a == 255) | (b == 255)))


def test_api_reads_xarray_encoding_only_where_values_are_still_encoded():
    xr = pytest.importorskip("xarray")
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 100, (9, 11)).astype(np.int16)
    raw[2:4, 3:6] = -9999
    encoded = xr.DataArray(raw, dims=("y", "x"))
    encoded.encoding.update({"_FillValue": -9999, "dtype": np.dtype("int16")})
    got = pipeline.window_reduce("a", {"a": encoded}, size=3, reduce="sum")
    np.testing.assert_array_equal(got.values, _float(brute_window(raw, 3, "sum", missing=raw == -9999)))
    # packed data: the fill is in the packed units, a decoded value equal to it is a real value
    packed = xr.DataArray(raw.astype(np.float32), dims=("y", "x"))
    packed.encoding.update({"_FillValue": -9999.0, "scale_factor": 0.5, "dtype": np.dtype("float32")})
    got = pipeline.window_reduce("a", {"a": packed}, size=3, reduce="sum")
    np.testing.assert_array_equal(got.values, _float(brute_window(raw.astype(np.float64), 3, "sum")))


def test_api_honours_a_zarr_arrays_nodata_attribute(tmp_path):
    zarr = pytest.importorskip("zarr")
    rng = np.random.default_rng(4)
    dem = rng.integers(-50, 3000, (10, 12)).astype(np.int16)
    dem[::3, ::4] = -9999
    z = zarr.create_array(str(tmp_path / "dem.zarr"), shape=dem.shape, dtype=dem.dtype, attributes={"nodata": -9999})
    z[...] = dem
    got = pipeline.window_reduce("a", {"a": z}, size=3, reduce="min")
    expected = brute_window(dem, 3, "min", missing=dem == -9999)
    assert all(v is not None for v in expected.ravel())
    np.testing.assert_array_equal(got, expected.astype(np.int64))


# ------------------------------------------------------------------ numpy.ma masks (issue 22, 8)


def test_masked_pixels_are_missing_not_summed_in():
    rng = np.random.default_rng(8)
    values = rng.integers(-100, 100, (7, 9))
    mask = rng.random(values.shape) < 0.2
    values[3, 4], mask[3, 4] = 10**9, True  # netCDF4 hands out such a masked fill
    got = pipeline.window_reduce("a", {"a": np.ma.array(values, mask=mask)}, size=3, reduce="sum")
    expected = brute_window(values, 3, "sum", missing=mask)
    filled = np.array([v if v is not None else got.ravel()[i] for i, v in enumerate(expected.ravel())]).reshape(got.shape)
    np.testing.assert_array_equal(got, filled.astype(got.dtype))
    assert got.max() < 10**6


@pytest.mark.parametrize("reduce", ["mean", "max", "count"])
def test_masked_float_and_explicit_nodata_both_count_as_missing(reduce):
    rng = np.random.default_rng(9)
    values = rng.normal(0, 10, (8, 10)).round(1)
    values[1, 1] = -1.0
    mask = rng.random(values.shape) < 0.3
    values[mask] = 1e300
    m = np.ma.array(values, mask=mask)
    got = pipeline.window_reduce("a", {"a": m}, size=3, reduce=reduce, nodata={"a": -1.0})
    expected = brute_window(values, 3, reduce, missing=mask | (values == -1.0))
    np.testing.assert_allclose(got, _float(expected), rtol=1e-13, atol=1e-13)  # float running sums
    assert np.array_equal(np.isnan(got), np.isnan(_float(expected)))


def test_masked_integers_holding_every_value_of_their_dtype():
    """uint8 with all 256 values unmasked: no value is left for the masked pixels, so a wider
    dtype holds them (the results are the same numbers)."""
    values = np.arange(512).reshape(16, 32).astype(np.uint8)
    mask = np.zeros(values.shape, bool)
    mask[::5, ::3] = True
    values[mask] = 7
    mask[0, 0] = False  # 7 stays a real value too
    for reduce in ("sum", "max", "count"):
        got = pipeline.window_reduce("a", {"a": np.ma.array(values, mask=mask)}, size=3, reduce=reduce)
        expected = brute_window(values, 3, reduce, missing=mask)
        np.testing.assert_array_equal(got, expected.astype(np.int64))


def test_masked_int64_keeps_exact_integer_sums():
    values = np.array([[2**30, 3, -5], [7, 11, 2**30 + 1]], dtype=np.int64)
    mask = np.array([[False, True, False], [False, False, True]])
    got = pipeline.window_reduce("a", {"a": np.ma.array(values, mask=mask)}, size=3, reduce="sum")
    assert got.dtype.kind == "i"
    np.testing.assert_array_equal(got, brute_window(values, 3, "sum", missing=mask).astype(np.int64))


def test_all_masked_gives_empty_windows():
    m = np.ma.array(np.ones((4, 5), np.int32), mask=True)
    np.testing.assert_array_equal(pipeline.window_reduce("a", {"a": m}, size=3, reduce="count"), np.zeros((4, 5)))


def test_dask_array_of_masked_chunks():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(10)
    values = rng.normal(0, 1, (12, 14))
    mask = rng.random(values.shape) < 0.25
    values[mask] = 1e9
    lazy = da.from_array(np.ma.array(values, mask=mask), chunks=(6, 7))
    got = pipeline.window_reduce("a", {"a": lazy}, size=3, reduce="mean").compute()
    np.testing.assert_allclose(got, _float(brute_window(values, 3, "mean", missing=mask)), rtol=1e-13, atol=1e-15)
    ints = da.from_array(np.ma.array(values.astype(np.int32), mask=mask), chunks=(6, 7))
    with pytest.raises(pipeline.InputError, match=r"^inputs\['a'\]: is a dask array of masked int32 chunks: pass nodata="):
        pipeline.window_reduce("a", {"a": ints}, size=3)
    got = pipeline.window_reduce("a", {"a": ints}, size=3, reduce="max", nodata={"a": -7}).compute()
    np.testing.assert_array_equal(got, brute_window(values.astype(np.int32), 3, "max", missing=mask).astype(np.int64))


def test_a_masked_boolean_array_is_refused():
    m = np.ma.array(np.ones((3, 3), bool), mask=np.eye(3, dtype=bool))
    with pytest.raises(pipeline.InputError, match=r"^inputs\['m'\]: is a masked bool array"):
        pipeline.window_reduce("where(m, 1, 0)", {"m": m}, size=3)


# ------------------------------------------------------------------ limits (issue 22, 19)


def _config_refuses(window: dict) -> bool:
    cfg = {"inputs": {"a": {"path": "in.zarr"}}, "op": "a", "window": window, "output": {"path": "out.zarr"}}
    try:
        load_config(cfg)
    except pipeline.ConfigError:
        return True
    return False


@pytest.mark.parametrize("size", [MAX_WINDOW + 1, 10**6, 10**9, [3, MAX_WINDOW + 1]])
def test_api_refuses_a_window_the_config_refuses_before_any_work(size):
    assert _config_refuses({"size": size})
    start = time.perf_counter()
    with pytest.raises(pipeline.ConfigError, match=r"^size: \d+ is larger than the largest window side, 16385$"):
        pipeline.window_reduce("a", {"a": np.zeros((8, 8))}, size=size)
    assert time.perf_counter() - start < 30  # size 1e6 ran ~15 minutes before


def test_the_largest_window_side_is_accepted_by_both():
    assert not _config_refuses({"size": MAX_WINDOW})
    got = pipeline.window_reduce("a", {"a": np.arange(8)}, size=MAX_WINDOW)
    np.testing.assert_array_equal(got, np.full(8, 28))


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        (dict(weights=np.ones((1, MAX_WINDOW + 1))), "weights"),
        (dict(weights=[[1]] * (MAX_WINDOW + 1)), "weights"),
        (dict(footprint=np.eye(MAX_WINDOW + 1, 2, dtype=bool)), "footprint"),
        (dict(footprint=np.ones((1, MAX_WINDOW + 1), bool)), "footprint"),
    ],
)
def test_api_refuses_weights_wider_than_the_config_allows(kwargs, where):
    assert _config_refuses({"weights": np.ones((1, MAX_WINDOW + 1), int).tolist()})
    with pytest.raises(pipeline.ConfigError, match=rf"^{where}: .*16385"):
        pipeline.window_reduce("a", {"a": np.zeros((8, 8))}, **kwargs)


@pytest.mark.parametrize(("kwargs", "where"), [(dict(cval=2**70, boundary="constant"), "cval"),
                                               (dict(fill_value=2**64, nodata={"a": 0}), "fill_value")])
def test_api_refuses_integers_beyond_64_bits_as_the_config_does(kwargs, where):
    window = {"size": 3, **({"cval": kwargs["cval"]} if "cval" in kwargs else {})}
    cfg = {"inputs": {"a": {"path": "in.zarr"}}, "op": "a", "window": window,
           "output": {"path": "out.zarr", **({"fill_value": kwargs["fill_value"]} if "fill_value" in kwargs else {})}}
    with pytest.raises(pipeline.ConfigError):
        load_config(cfg)
    with pytest.raises(pipeline.ConfigError, match=rf"^{where}: an integer of \d+ bits does not fit in 64 bits$"):
        pipeline.window_reduce("a", {"a": np.zeros((8, 8), np.uint8)}, size=3, **kwargs)
