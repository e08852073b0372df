"""Sharded outputs (``output.shards``): values equal to the brute-force reference and to an
unsharded run for every reducer family with a halo across shard edges; one stored object per
shard; a run killed mid-run resumes to the same values and ``verify`` reads shards; the config
checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from reference import brute_window, brute_window_sum, check
from run_helpers import SHAPE, W, kill_when_done, make_inputs, n_done, start_held
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.errors import ConfigError
from pipeline.runner import runconfig
from pipeline.storage import ledger

cli = CliRunner()
STATS = ["sum", "mean", "var", "std", "min", "max", "count"]


def write_cfg(root: Path, out: str, output: dict | None = None, **extra) -> Path:
    cfg = {
        "inputs": {"a": {"path": "in.zarr", "array": "a"}, "b": {"path": "in.zarr", "array": "b"}},
        "op": "a**2 - b**2",
        "window": {"size": W},
        "output": {"path": out, **(output or {})},
        "compute": {"chunks": 12, "workers": 2},
        **extra,
    }
    path = root / f"{Path(out).stem}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def stored_files(array_dir: Path) -> list[str]:
    """Every file under the array's folder but its metadata, as the store holds them; not zarr's
    temporary ``<key>.<token>.partial`` of a write killed before its rename (a kill -9 can leave
    one: it is never read as a chunk, as in test_reliability's ``chunk_bytes``)."""
    return sorted(
        str(p.relative_to(array_dir)) for p in array_dir.rglob("*") if p.is_file() and p.name != "zarr.json" and not p.name.endswith(".partial")
    )


@pytest.fixture
def small(tmp_path):
    """A 40 x 44 uint8 pair in 4 x 4 input chunks."""
    rng = np.random.default_rng(27)
    a = rng.integers(0, 256, (40, 44), dtype=np.uint8)
    b = rng.integers(0, 256, (40, 44), dtype=np.uint8)
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    for name, arr in (("a", a), ("b", b)):
        g.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(4, 4), dimension_names=("y", "x"))[...] = arr
    return tmp_path, a.astype(np.int64) ** 2 - b.astype(np.int64) ** 2


@pytest.mark.parametrize(
    ("shards", "boundary", "scheduler"),
    [(12, "reflect", "threads"), ([8, 16], "nearest", "processes"), ([8, 16], "reflect", "synchronous")],
)
def test_every_reducer_sharded_equals_brute_force_and_unsharded(small, shards, boundary, scheduler):
    """Chunks 4, shards of 3 x 3 chunks (12) or 2 x 4 chunks ([8, 16]), a 7 x 7 window whose halo
    (3) crosses every shard edge, all statistics at once: each equals the brute-force loop and
    the unsharded run's values, on threads and on a process pool."""
    root, field = small
    window = {"size": 7, "reduce": STATS, "boundary": boundary}
    compute = {"chunks": 4, "workers": 2, "scheduler": scheduler}
    sharded = write_cfg(root, "sh.zarr", {"shards": shards}, window=window, compute=compute)
    plain = write_cfg(root, "pl.zarr", window=window, compute=compute)
    for cfg in (sharded, plain):
        res = runconfig.run(cfg)
        assert res.status == runconfig.DONE, res
    sy, sx = (shards, shards) if isinstance(shards, int) else shards
    sh = zarr.open_group(root / "sh.zarr", mode="r")
    pl = zarr.open_group(root / "pl.zarr", mode="r")
    for st in STATS:
        arr = sh[f"result_{st}"]
        assert arr.shards == (sy, sx) and arr.chunks == (4, 4)
        assert pl[f"result_{st}"].shards is None
        got = arr[...]
        check(got, brute_window(field, 7, st, boundary=boundary))
        np.testing.assert_array_equal(got, pl[f"result_{st}"][...])
        # one object per shard, keys c/<row>/<col>
        files = stored_files(root / "sh.zarr" / f"result_{st}")
        assert files == sorted(f"c/{i}/{j}" for i in range(math.ceil(40 / sy)) for j in range(math.ceil(44 / sx)))
        assert len(stored_files(root / "pl.zarr" / f"result_{st}")) == 10 * 11


def test_shards_per_axis_and_a_last_shard_merged_with_a_narrow_tail(small):
    """Shards [8, 20] on 4-pixel chunks; the sum equals brute force; every shard is one object."""
    root, field = small
    cfg = write_cfg(root, "ax.zarr", {"shards": [8, 20]}, compute={"chunks": 4})
    assert runconfig.run(cfg).status == runconfig.DONE
    arr = zarr.open_group(root / "ax.zarr", mode="r")["result"]
    assert arr.shards == (8, 20)
    np.testing.assert_array_equal(arr[...], brute_window_sum(field, W))
    assert len(stored_files(root / "ax.zarr" / "result")) == math.ceil(40 / 8) * math.ceil(44 / 20)


def test_multiscale_beside_a_sharded_array(small):
    """The pyramid is made from the sharded array (its levels unsharded): level 0 equals brute
    force and every level equals the unsharded run's."""
    root, field = small
    window = {"size": 3, "reduce": "mean"}
    for name, output in (("msh", {"shards": 8, "multiscale": True}), ("mpl", {"multiscale": True})):
        assert runconfig.run(write_cfg(root, f"{name}.zarr", output, window=window, compute={"chunks": 4})).status == runconfig.DONE
    sh, pl = (zarr.open_group(root / f"{n}.zarr", mode="r") for n in ("msh", "mpl"))
    check(sh["result"][...], brute_window(field, 3, "mean"))
    paths = [d["path"] for d in sh.attrs["ome"]["multiscales"][0]["datasets"]]
    assert len(paths) > 1 and paths == [d["path"] for d in pl.attrs["ome"]["multiscales"][0]["datasets"]]
    for p in paths:
        np.testing.assert_array_equal(sh[p][...], pl[p][...])


def test_dry_run_counts_shard_objects(small):
    root, _ = small
    cfg = write_cfg(root, "dry.zarr", {"shards": 12}, compute={"chunks": 4})
    res = cli.invoke(app, ["run", "--dry-run", str(cfg)])
    assert res.exit_code == 0, res.output
    n = math.ceil(40 / 12) * math.ceil(44 / 12)
    assert "110 blocks" in res.output and f"{n} output shard objects" in res.output, res.output


@pytest.mark.parametrize(
    ("output", "words"),
    [
        ({"shards": 10}, ["output.shards", "multiple of the output chunk side 4"]),
        ({"shards": [12, 12, 12]}, ["output.shards", "one per window axis"]),
        ({"shards": 12, "format": "cog"}, ["shards", "Zarr"]),
    ],
)
def test_shards_refused_with_one_line(small, output, words):
    root, _ = small
    cfg = write_cfg(root, "bad.zarr", output, compute={"chunks": 4})
    res = cli.invoke(app, ["validate", str(cfg)])
    assert res.exit_code == 2, res.output
    assert all(w in res.output for w in words), res.output
    assert not (root / "bad.zarr").exists()


def test_plan_refuses_shards_off_the_chunks():
    from pipeline.plan.planner import ArraySpec, make_plan

    spec = {"a": ArraySpec("a", (100, 100), np.dtype("uint8"), chunks=(10, 10))}
    with pytest.raises(ConfigError, match="multiple") as e:
        make_plan("a", spec, size=3, chunks=10, shards=25)
    assert e.value.where == "output.shards"
    plan = make_plan("a", spec, size=3, chunks=10, shards=[30, 100])
    assert plan.shards == (30, 100) and plan.storage_chunks == (10, 10)
    assert plan.out_chunks == ((10,) * 10, (10,) * 10)  # blocks are the output chunks, nested in the shards


def whole_shards_done(out: Path, side: int, chunk: int, nblocks: int) -> int:
    """The blocks the resume ledger records as done whose shard has every block recorded."""
    fp = zarr.open_group(out, mode="r")["result"].attrs["pipeline"]["fingerprint"]
    found = ledger.find(out, "result", fp)
    per = side // chunk
    shards: dict[tuple[int, int], int] = {}
    for i, j in found[0].done() if found is not None else ():
        shards[(i // per, j // per)] = shards.get((i // per, j // per), 0) + 1
    sizes = {k: len(range(k[0] * per, min(nblocks, k[0] * per + per))) * len(range(k[1] * per, min(nblocks, k[1] * per + per))) for k in shards}
    return sum(n for k, n in shards.items() if n == sizes[k])


def test_killed_mid_run_resumes_to_the_same_values_and_verify_is_clean(tmp_path):
    """132 x 132 in 12-pixel chunks and 24-pixel shards: 11 x 11 = 121 blocks in 6 x 6 = 36
    shards.  The run is held after 8 shard writes and killed; the resume recomputes every shard
    not wholly recorded (a shard killed while its blocks were being recorded too); values equal
    brute force, verify reads every shard."""
    a, b = make_inputs(tmp_path)
    cfg = write_cfg(tmp_path, "out.zarr", {"shards": 24})
    out = tmp_path / "out.zarr"
    kill_when_done(start_held(cfg, 8), out, 8)
    done = whole_shards_done(out, 24, 12, 11)
    assert 8 <= n_done(out) < 121 and done < 121
    res = runconfig.run(cfg)
    assert res.status == runconfig.DONE and res.blocks == 121 and res.skipped == done and res.computed == 121 - done, res
    arr = zarr.open_group(out, mode="r")["result"]
    assert arr.shards == (24, 24)
    np.testing.assert_array_equal(arr[...], brute_window_sum(a.astype(np.int64) ** 2 - b.astype(np.int64) ** 2, W))
    assert len(stored_files(out / "result")) == math.ceil(SHAPE[0] / 24) * math.ceil(SHAPE[1] / 24)
    ver = cli.invoke(app, ["verify", str(out)])
    assert ver.exit_code == 0 and "36 of 36 chunks" in ver.output and "0 damaged, 0 missing" in ver.output, ver.output


def test_verify_finds_a_damaged_shard_and_rerun_repairs_it(tmp_path):
    """A damaged shard: verify drops a block of it from the ledger; the rerun computes the whole
    shard again (its 2 x 2 blocks) and writes it whole."""
    a, b = make_inputs(tmp_path)
    cfg = write_cfg(tmp_path, "out.zarr", {"shards": 24})
    out = tmp_path / "out.zarr"
    assert runconfig.run(cfg).status == runconfig.DONE
    victim = out / "result" / "c" / "2" / "3"
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0x10
    victim.write_bytes(bytes(data))
    res = cli.invoke(app, ["verify", str(out)])
    assert res.exit_code == 1 and "damaged result/c/2/3" in res.output and "1 blocks marked" in res.output, res.output
    res = cli.invoke(app, ["validate", str(cfg)])  # the dry run counts whole shards too
    assert "117 of 121 blocks done, 4 to compute" in res.output, res.output
    res = runconfig.run(cfg)  # verify dropped one block of the shard: its 2 x 2 blocks are recomputed
    assert res.status == runconfig.DONE and res.computed == 4, res
    arr = zarr.open_group(out, mode="r")["result"]
    np.testing.assert_array_equal(arr[...], brute_window_sum(a.astype(np.int64) ** 2 - b.astype(np.int64) ** 2, W))
    assert cli.invoke(app, ["verify", str(out)]).exit_code == 0


def test_object_storage_one_object_per_shard_resume_and_a_lost_shard(tmp_path, s3):
    """On moto's S3: 96 x 128 in 16-pixel chunks and 32-pixel shards (3 x 4 = 12 shards of 2 x 2
    blocks); a run stopped after 5 shards (and a block of the 6th) resumes the other 7; a deleted
    shard object is forgotten and only it is recomputed; the store holds one object per shard."""
    import s3fs

    from pipeline.config.load import parse_config

    a = np.random.default_rng(27).integers(0, 1000, (96, 128), dtype=np.uint16)
    zarr.open_group(tmp_path / "in.zarr", mode="w").create_array("a", shape=a.shape, chunks=(16, 16), dtype=a.dtype)[...] = a
    out = f"s3://pipeline-test/shards-{tmp_path.name}.zarr"
    so = {"endpoint_url": s3["endpoint_url"]}
    cfg = parse_config({
        "inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}}, "op": "a", "window": {"size": 3},
        "compute": {"chunks": 16, "scheduler": "threads", "workers": 1}, "output": {"path": out, "storage_options": so, "shards": 32},
    })

    def stop(done, total):
        if done == 5 * 4 + 1:
            raise KeyboardInterrupt("test")

    with pytest.raises(KeyboardInterrupt):
        runconfig.run(cfg, progress=stop)
    fs = s3fs.S3FileSystem(**so)
    base = f"{out.removeprefix('s3://')}/result"
    (record,) = [p for p in fs.find(f"{out.removeprefix('s3://')}.pipeline") if "/done/" in p]
    recorded = json.loads(fs.cat_file(record))
    assert len(recorded) == 5 * 4
    victim = recorded[2]
    fs.rm_file(f"{base}/c/{victim[0] // 2}/{victim[1] // 2}")
    res = runconfig.run(cfg)
    assert (res.skipped, res.computed) == (4 * 4, 8 * 4), res
    keys = sorted(p.removeprefix(base + "/") for p in fs.find(base) if not p.endswith("zarr.json"))
    assert keys == sorted(f"c/{i}/{j}" for i in range(3) for j in range(4))
    arr = zarr.open_group(out, mode="r", storage_options=so)["result"]
    assert arr.shards == (32, 32)
    np.testing.assert_array_equal(arr[...], brute_window_sum(a.astype(np.int64), 3))


def test_a_leading_band_axis_gets_one_chunk_per_shard(tmp_path):
    """A (3, 40, 44) input in (1, 4, 4) chunks, a 3 x 3 window on (y, x), shards [8, 12]: the
    band axis keeps one chunk per shard; every band equals brute force."""
    a = np.random.default_rng(3).integers(0, 256, (3, 40, 44), dtype=np.uint8)
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    g.create_array("a", shape=a.shape, dtype=a.dtype, chunks=(1, 4, 4), dimension_names=("band", "y", "x"))[...] = a
    cfg = write_cfg(tmp_path, "out.zarr", {"shards": [8, 12]}, compute={"chunks": 4})
    doc = yaml.safe_load(cfg.read_text())
    doc["inputs"], doc["op"], doc["window"] = {"a": {"path": "in.zarr", "array": "a"}}, "a", {"size": 3}
    cfg.write_text(yaml.safe_dump(doc))
    assert runconfig.run(cfg).status == runconfig.DONE
    arr = zarr.open_group(tmp_path / "out.zarr", mode="r")["result"]
    assert arr.shards == (1, 8, 12) and arr.chunks == (1, 4, 4)
    got = arr[...]
    for k in range(3):
        np.testing.assert_array_equal(got[k], brute_window_sum(a[k].astype(np.int64), 3))
    assert len(stored_files(tmp_path / "out.zarr" / "result")) == 3 * 5 * math.ceil(44 / 12)


@pytest.mark.parametrize(("width", "shards"), [(44, [8, 12]), (41, 8)])
def test_each_shard_is_written_by_one_call_of_its_whole_region(tmp_path, monkeypatch, width, shards):
    """Every write through the output target, counted: one call per shard and statistic, whose
    region is the whole shard (clipped to the image); 4-pixel chunks, shards of 2 x 3 chunks, or
    8-pixel shards over 41 columns, where the last block (36-41, its 1-pixel tail merged) reaches
    into the last shard: that shard is written with the one before, in one call."""
    from pipeline.storage.targets.zarr import ZarrTarget

    rng = np.random.default_rng(8)
    a = rng.integers(0, 256, (40, width), dtype=np.uint8)
    zarr.open_group(tmp_path / "in.zarr", mode="w").create_array("a", shape=a.shape, dtype=a.dtype, chunks=(4, 4))[...] = a
    calls: list[tuple[str, tuple[tuple[int, int], ...]]] = []
    write = ZarrTarget.write_block

    def counted(self, writer, region, block):  # type: ignore[no-untyped-def]
        calls.append((writer.basename, tuple((s.start, s.stop) for s in region)))
        return write(self, writer, region, block)

    monkeypatch.setattr(ZarrTarget, "write_block", counted)
    cfg = write_cfg(tmp_path, "out.zarr", {"shards": shards}, op="a", window={"size": 7, "reduce": ["mean", "max"]},
                    compute={"chunks": 4, "workers": 2, "scheduler": "threads"})
    doc = yaml.safe_load(cfg.read_text())
    doc["inputs"] = {"a": {"path": "in.zarr", "array": "a"}}
    cfg.write_text(yaml.safe_dump(doc))
    assert runconfig.run(cfg).status == runconfig.DONE
    sy, sx = (shards, shards) if isinstance(shards, int) else shards
    rows = [(i, min(i + sy, 40)) for i in range(0, 40, sy)]
    cols = [(j, min(j + sx, width)) for j in range(0, width, sx)]
    if width == 41:  # the 1-pixel tail block joined the block before: shards 32-40 and 40-41 in one write
        cols = cols[:-2] + [(32, 41)]
    want = sorted((f"result_{st}", (r, c)) for st in ("mean", "max") for r in rows for c in cols)
    assert sorted(calls) == want
    out = zarr.open_group(tmp_path / "out.zarr", mode="r")
    check(out["result_mean"][...], brute_window(a.astype(np.int64), 7, "mean"))
    check(out["result_max"][...], brute_window(a.astype(np.int64), 7, "max"))
    assert len(stored_files(tmp_path / "out.zarr" / "result_max")) == math.ceil(40 / sy) * math.ceil(width / sx)


def test_memory_per_task_stays_near_the_unsharded(tmp_path):
    """A 1024² float64 pair with missing pixels (NaN) in 64² chunks, 512² shards, ``count``: the
    traced peak (numpy's allocations) of an in-process run holds a block's working set, the
    input chunk cache and one shard's output (512² uint8) with zarr's encoding of it, not a
    whole shard's inputs with their halo.  Measured on this machine: 4.2 MiB here, 2.6 MiB
    unsharded, 10.8 MiB with the shard computed as one block (the code before)."""
    import tracemalloc

    from scipy import ndimage

    from pipeline.config.load import parse_config

    rng = np.random.default_rng(6)
    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    valid = np.zeros((1024, 1024), dtype=np.int64)
    for name in "ab":
        x = rng.random((1024, 1024))
        x[x < 0.1] = np.nan
        valid += np.isnan(x)
        g.create_array(name, shape=x.shape, dtype=x.dtype, chunks=(64, 64))[...] = x
    doc = {
        "inputs": {"a": {"path": str(tmp_path / "in.zarr"), "array": "a"}, "b": {"path": str(tmp_path / "in.zarr"), "array": "b"}},
        "op": "a + b", "window": {"size": 5, "reduce": "count"},
        "compute": {"chunks": 64, "scheduler": "synchronous"}, "output": {"path": str(tmp_path / "warm.zarr")},
    }
    runconfig.run(parse_config(doc))  # kernels compiled and modules imported before measuring
    doc["output"] = {"path": str(tmp_path / "out.zarr"), "shards": 512}
    tracemalloc.start()
    try:
        assert runconfig.run(parse_config(doc)).status == runconfig.DONE
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 2**20, f"{peak / 2**20:.1f} MiB"
    arr = zarr.open_group(tmp_path / "out.zarr", mode="r")["result"]
    assert arr.shards == (512, 512)
    ref = ndimage.correlate((valid == 0).astype(np.int64), np.ones((5, 5), np.int64), mode="constant", cval=0)
    np.testing.assert_array_equal(arr[...], ref)


def test_validate_says_the_memory_per_task_of_a_sharded_plan(tmp_path):
    """A virtual 16384² uint16 pair (metadata only) in 2048² chunks, ``a - b``, a 5 x 5 sum
    (int32): sharded 8192² the memory per task is the unsharded block's plus the shard's int32
    values (256 MiB) and twice them for zarr's encoding: 768 MiB more; far under the shard
    computed as one block (the plan with 8192² chunks, unsharded)."""
    import re

    g = zarr.open_group(tmp_path / "in.zarr", mode="w")
    for name in "ab":
        g.create_array(name, shape=(16384, 16384), chunks=(2048, 2048), dtype="uint16")
    mib = {}
    for name, output, chunks in (("plain", {}, "auto"), ("sharded", {"shards": 8192}, "auto"), ("whole", {}, 8192)):
        cfg = write_cfg(tmp_path, f"{name}.zarr", output, op="a - b", window={"size": 5}, compute={"chunks": chunks, "workers": 1})
        res = cli.invoke(app, ["validate", str(cfg)])
        assert res.exit_code == 0, res.output
        value, unit = re.search(r"memory/task:\s+~([\d.]+) (MiB|GiB)", res.output).groups()
        mib[name] = float(value) * (1024 if unit == "GiB" else 1)
    assert mib["sharded"] - mib["plain"] == pytest.approx(8192**2 * 4 * 3 / 2**20, abs=0.2)
    assert mib["sharded"] < mib["whole"] / 2
