"""Output targets: the protocol, the registry by suffix or scheme, and the Zarr implementation."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from pipeline.errors import OutputError
from pipeline.storage import targets
from pipeline.storage.targets.zarr import COORD_MARK, ZarrTarget


def _spec(**extra):
    fields = {
        "shape": (6, 5), "dtype": np.dtype("int32"), "chunks": (4, 4), "dims": ("y", "x"), "attrs": {"pipeline": {"complete": False}},
        "coords": {"y": np.arange(6) * 10.0},
    }
    return targets.OutputArray(**{**fields, **extra})


def test_zarr_target_satisfies_the_protocol(tmp_path):
    target = targets.open_target(str(tmp_path / "out.zarr"))
    assert isinstance(target, ZarrTarget) and isinstance(target, targets.OutputTarget)
    assert target.can_swap and target.location("result").endswith("out.zarr:result")
    target.check_path()  # nothing there yet: fine
    assert target.state("result") is None
    arr = target.create_array("result", _spec(fill_value=-1))
    assert target.state("result") == {"complete": False}
    w = target.writer(arr)
    target.write_block(w, (slice(0, 4), slice(0, 4)), np.ones((4, 4), dtype="int32"))
    target.update_state(arr, complete=True)
    target.finalize()
    assert target.finalized_state("result") == {"complete": True}
    opened = target.open_array("result", mode="r")
    assert target.stored_chunk_keys(opened) == {target.chunk_key(opened, (0, 0))}
    np.testing.assert_array_equal(opened[:4, :4], 1)
    assert opened[5, 4] == -1
    group = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert group["y"].attrs[COORD_MARK] and list(group["y"][...]) == list(np.arange(6) * 10.0)


def test_a_staged_replacement_is_swapped_in_with_its_coordinates(tmp_path):
    target = targets.open_target(str(tmp_path / "out.zarr"))
    target.create_array("result", _spec())
    zarr.open_group(str(tmp_path / "out.zarr"), mode="r+").attrs["title"] = "kept"
    (tmp_path / "out.zarr" / "notes.txt").write_text("a user's file")
    target.finalize()
    y = np.arange(6) * 20.0
    assert target.check_coords({"y": y}, overwrite=True) == ["y"]
    with pytest.raises(OutputError, match="overwrite"):
        target.check_coords({"y": y}, overwrite=False)
    stage = target.staged(fresh=True)
    assert stage.path != target.path and target.state("result") == {"complete": False}
    new = stage.create_array("result", _spec(coords={"y": y}, attrs={"pipeline": {"fingerprint": "f" * 64, "complete": True}}))
    new[...] = 7
    target.swap("f" * 64)
    group = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")  # consolidated, as xarray reads it
    assert sorted(group.array_keys()) == ["result", "y"]
    np.testing.assert_array_equal(group["result"][...], 7)
    np.testing.assert_array_equal(group["y"][...], y)
    assert group.attrs["title"] == "kept" and (tmp_path / "out.zarr" / "notes.txt").read_text() == "a user's file"
    assert sorted(p.name for p in (tmp_path / "out.zarr.pipeline").iterdir()) == []  # staged store and journal gone


def test_a_registered_format_is_chosen_by_suffix_or_scheme(tmp_path, monkeypatch):
    monkeypatch.setattr(targets._FORMATS, "entries", [])
    opened = []

    def opener(path, *, storage_options=None):
        opened.append((path, storage_options))
        return "cog target"

    targets.register(".tif", opener)
    targets.register("fake://", opener)
    assert targets.open_target("out/scene.TIF") == "cog target"
    assert targets.open_target("fake://bucket/x", {"anon": True}) == "cog target"
    assert opened == [("out/scene.TIF", None), ("fake://bucket/x", {"anon": True})]
    assert targets.opener_for(str(tmp_path / "out.zarr")) == ZarrTarget.open  # anything else: Zarr
    assert not targets.open_target("s3://bucket/out.zarr").can_swap  # object storage: replaced in place
