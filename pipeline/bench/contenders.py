"""The contenders of ``pipeline bench``, each run in its own subprocess (``python -m
pipeline.bench.compare _contender ...``): this project on a scheduler, the codec floor, and the peers
(dask-image, xarray, ``map_overlap`` + scipy); each returns its wall and CPU time and peak RSS."""

from __future__ import annotations

import os
import resource
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import zarr

OP = "a**2 - b**2"


def member(group: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of ``group`` (the bench's stores hold arrays under these names)."""
    import zarr

    arr = group[name]
    assert isinstance(arr, zarr.Array), f"{name} is not an array"
    return arr


def peak_rss() -> int:
    """This process's peak resident set, bytes.  ``VmHWM`` where Linux has it: ``ru_maxrss`` of
    a subprocess also counts its parent's resident set at fork time, which would charge the
    benchmark driver's memory to the contender."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _field(a, b):
    af = a.astype("float64")
    bf = b.astype("float64")
    return af * af - bf * bf


def _to_int(x, w):
    import dask.array as da

    return da.rint(x * (w * w)).astype("int32")


def _preload(name: str) -> None:
    """Import what a contender uses, before the clock starts; JIT loading is timed (and this
    project's peak RSS includes numba, but not dask, which its local runs do not load)."""
    from pipeline.runner import runconfig  # noqa: F401 - imported before the clock starts
    from pipeline.storage import io, zarrchunks  # noqa: F401 - imported before the clock starts

    if name not in ("pipeline", "floor"):
        import dask  # noqa: F401
        import dask.array  # noqa: F401
    if name == "dask-image":
        import dask_image.ndfilters  # noqa: F401
    if name == "xarray":
        import xarray  # noqa: F401


def run_contender(name: str, src: str, out: str, w: int, size: int, threads: int, ref: str | None) -> dict[str, Any]:
    """Run one contender in this process; returns timing fields."""
    import zarr

    _preload(name)
    t0 = time.perf_counter()
    c0 = time.process_time()
    g = zarr.open_group(src, mode="r")
    if name.startswith("pipeline"):
        return _run_pipeline(name.partition("@")[2] or "threads", src, out, w, threads)
    if name == "floor":
        t0, c0 = _run_floor(g, out, size, threads, ref)
    else:
        _run_peer(name, g, out, w, size, threads)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {"wall": wall, "cpu": cpu, "rss": peak_rss()}


def _run_floor(g: zarr.Group, out: str, size: int, threads: int, ref: str | None) -> tuple[float, float]:
    """The codec floor: decode both inputs and encode the exact result ``ref`` chunk by chunk;
    returns the clocks taken once the result is loaded and the output created."""
    from concurrent.futures import ThreadPoolExecutor

    import zarr

    from pipeline.storage import io, zarrchunks

    exact = member(zarr.open_group(ref, mode="r"), "result")
    data = exact[...]  # loaded before the clock starts
    a, b = member(g, "a"), member(g, "b")
    target = io.create_output(
        out, "result", shape=exact.shape, dtype=exact.dtype, chunks=exact.chunks, dims=("y", "x"), attrs={}, coords={},
        overwrite=True,
    )
    ca, cb = tuple(a.chunks), tuple(exact.chunks)
    t0 = time.perf_counter()
    c0 = time.process_time()

    # chunk by chunk through zarrchunks.DirectChunks where it applies, as the pipeline does: the
    # floor is the fastest way this project knows to move these bytes
    da_, db_, dt_ = zarrchunks.DirectChunks.of(a), zarrchunks.DirectChunks.of(b), zarrchunks.DirectChunks.of(target)

    def read(ij):
        i, j = ij
        for arr, d in ((a, da_), (b, db_)):
            if d is not None:
                d.read((i // ca[0], j // ca[1]))
            else:
                arr[i : i + ca[0], j : j + ca[1]]

    def write(ij):
        i, j = ij
        block = data[i : i + cb[0], j : j + cb[1]]
        if dt_ is not None:
            dt_.write((i // cb[0], j // cb[1]), block)
        else:
            target[i : i + cb[0], j : j + cb[1]] = block

    with ThreadPoolExecutor(threads) as pool:
        jobs = [pool.submit(read, (i, j)) for i in range(0, size, ca[0]) for j in range(0, size, ca[1])]
        jobs += [pool.submit(write, (i, j)) for i in range(0, size, cb[0]) for j in range(0, size, cb[1])]
        for j in jobs:
            j.result()
    return t0, c0


def _run_peer(name: str, g: zarr.Group, out: str, w: int, size: int, threads: int) -> None:
    """dask-image, xarray or ``map_overlap`` + scipy on the float64 field, rounded to int32, to Zarr."""
    import dask
    import dask.array as da

    a = da.from_zarr(g["a"])[:size, :size]
    b = da.from_zarr(g["b"])[:size, :size]
    f = _field(a, b)
    if name == "dask-image":
        from dask_image.ndfilters import uniform_filter

        res = _to_int(uniform_filter(f, size=w, mode="constant"), w)
    elif name == "xarray":
        import xarray as xr

        x = xr.DataArray(f, dims=("y", "x")).rolling(y=w, x=w, center=True, min_periods=1).sum()
        res = da.rint(x.data).astype("int32")
    elif name == "map_overlap":
        from scipy import ndimage

        res = _to_int(
            da.map_overlap(lambda x: ndimage.uniform_filter(x, size=w, mode="constant"), f, depth=w // 2, boundary=0,
                           dtype="float64"),
            w,
        )
    else:  # pragma: no cover
        raise ValueError(name)
    with dask.config.set(scheduler="threads", num_workers=threads):
        res.to_zarr(out, component="result", overwrite=True)


def _run_pipeline(mode: str, src: str, out: str, w: int, threads: int) -> dict[str, Any]:
    """``pipeline.run`` on ``mode``; the session's start-up timed apart."""
    from pipeline.config.load import parse_config
    from pipeline.execution import sessions
    from pipeline.runner import runconfig

    compute: dict[str, Any] = {"scheduler": mode, "workers": threads}
    if mode == "local-cluster":
        compute.update(threads_per_worker=1)
    elif mode == "tcp":
        compute = {"scheduler": os.environ["PIPELINE_BENCH_SCHEDULER"]}
    cfg = parse_config(
        {
            "inputs": {"a": {"path": src, "array": "a"}, "b": {"path": src, "array": "b"}},
            "op": OP,
            "window": {"size": w},
            "output": {"path": out, "overwrite": True},
            "compute": compute,
        }
    )
    t0 = time.perf_counter()
    worker_rss = 0
    with sessions.session(cfg) as sess:
        if sess.executor is None:  # threads: load the kernels here, as engine.prime does on workers
            from pipeline.execution import engine

            engine.prime(engine.Job(runconfig.prepare(cfg), None, None, "bench"))
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        c0 = time.process_time()
        runconfig.run(cfg, session=sess)
        # each worker loading the job and its compiled kernels before the first tile (engine.prime)
        # counts as start-up, like the workers' imports
        startup += sess.prime_seconds
        wall = time.perf_counter() - t0 - sess.prime_seconds
        cpu = time.process_time() - c0
        if sess.client is not None:
            worker_rss = max(sess.client.run(peak_rss).values())
    if mode == "processes":  # the pool's processes, reaped when the session closed
        worker_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {"wall": wall, "cpu": cpu, "rss": peak_rss(), "startup": startup, "worker_rss": worker_rss}
