"""Input sources: the protocol, the registry by suffix or scheme, and the Zarr implementation."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from pipeline.errors import InputError
from pipeline.storage import sources
from pipeline.storage.sources.zarr import ZarrSource


def _store(tmp_path):
    root = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    a = root.create_array("a", shape=(6, 5), dtype="int16", chunks=(4, 4), dimension_names=("y", "x"))
    a[:] = np.arange(30, dtype="int16").reshape(6, 5)
    y = root.create_array("y", shape=(6,), dtype="float64", chunks=(6,), dimension_names=("y",))
    y[:] = np.arange(6) * 10.0
    return str(tmp_path / "in.zarr")


def test_zarr_source_satisfies_the_protocol(tmp_path):
    src = sources.open_source(_store(tmp_path), "a", where="inputs.a")
    assert isinstance(src, ZarrSource) and isinstance(src, sources.InputSource)
    assert (src.shape, src.dtype, src.chunks, src.dims) == ((6, 5), np.dtype("int16"), (4, 4), ("y", "x"))
    assert src.name.endswith("in.zarr:a")
    assert list(src.coords()) == ["y"]
    np.testing.assert_array_equal(src.read((slice(1, 3), slice(0, 2))), [[5, 6], [10, 11]])
    ident = src.identity()
    assert ident["array"] == "a" and ident["files"]["count"] > 0
    spec = sources.spec_of("a", src)
    assert (spec.shape, spec.dims, spec.source) == ((6, 5), ("y", "x"), src.name)


def test_a_registered_format_is_chosen_by_suffix_or_scheme(tmp_path, monkeypatch):
    monkeypatch.setattr(sources._FORMATS, "entries", [])
    opened = []

    def opener(path, array, *, where, storage_options=None):
        opened.append((path, array, where))
        return "tiff source"

    sources.register(".tif", opener)
    sources.register("fake://", opener)
    assert sources.open_source("data/scene.TIF", None, where="inputs.a") == "tiff source"
    assert sources.open_source("fake://bucket/x", "b", where="inputs.b") == "tiff source"
    assert opened == [("data/scene.TIF", None, "inputs.a"), ("fake://bucket/x", "b", "inputs.b")]
    assert sources.opener_for(_store(tmp_path)) == ZarrSource.open  # anything else: Zarr


def test_a_missing_store_is_refused_naming_the_config_key(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        sources.open_source(str(tmp_path / "none.zarr"), "a", where="inputs.a")
