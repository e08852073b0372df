"""``pipeline bench``: this project against its peers, in one invocation, checked for exactness.

For each window size, every contender runs in its own subprocess (so that peak RSS and CPU time
are its own) on the same Zarr pair, writes its result to Zarr, and the result is read back and
compared with an exact reference computed here, independently of the package's kernels (int64
summed-area tables with numpy, band by band).  Contenders:

* ``pipeline``: ``pipeline.run`` on a config (the code path of ``pipeline run``), threads;
* ``pipeline@MODE`` (``--schedulers``): the same run on another scheduler: ``local-cluster``
  (``threads`` workers x 1 thread), ``processes`` (``threads`` processes), ``tcp`` (a ``dask
  scheduler`` with ``threads`` ``dask worker`` processes of 1 thread, started by the benchmark).
  The scheduler's start-up (cluster, worker processes, imports) is timed apart (``startup``) and
  not counted in the wall time; ``worker_rss`` is the largest peak RSS of a worker process;
* ``dask-image``: ``dask_image.ndfilters.uniform_filter`` on the float64 field, times the window
  area, rounded to int32, ``to_zarr`` (zarr's default codecs);
* ``xarray``: ``DataArray.rolling(y=W, x=W, center=True, min_periods=1).sum()`` on the field,
  rounded to int32, ``to_zarr``;
* ``map_overlap``: ``dask.array.map_overlap`` with ``scipy.ndimage.uniform_filter`` per block;
* ``floor``: the codec floor: decode both inputs and encode this project's (exact) output with
  the same codecs and chunks, chunk by chunk on the same number of threads, through
  :class:`pipeline.zarrchunks.DirectChunks` as this project does; no computation.

Peers that are too slow at full size (``--peer-size``) run on the top-left crop of the pair,
said in the table.  ``--fast`` is a smoke test small enough for CI.  A kernel section times the
in-memory kernels on one thread (``window_reduce`` against scipy's ``uniform_filter`` path, the
numpy-only reference path and OpenCV's ``boxFilter`` when installed).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import zarr

OP = "a**2 - b**2"
CONTENDERS = ("pipeline", "dask-image", "xarray", "map_overlap", "floor")
SCHEDULERS = ("local-cluster", "processes", "tcp")


def _member(group: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of ``group`` (the bench's stores hold arrays under these names)."""
    import zarr

    arr = group[name]
    assert isinstance(arr, zarr.Array), f"{name} is not an array"
    return arr


# ------------------------------------------------------------------------------ data


def make_pair(path: str, n: int, chunk: int, seed: int = 0) -> None:
    """A uint8 pair with imagery-like content (gradients, texture, noise), zstd level 0, chunked
    ``chunk``², written band by band (memory: one band)."""
    import zarr
    from zarr.codecs import ZstdCodec

    g = zarr.open_group(path, mode="w")
    rng = np.random.default_rng(seed)
    arrs = [
        g.create_array(
            name, shape=(n, n), dtype="uint8", chunks=(chunk, chunk), compressors=[ZstdCodec(level=0)],
            dimension_names=("y", "x"),
        )
        for name in "ab"
    ]
    x = np.arange(n, dtype=np.float32)[None, :]
    for i in range(0, n, chunk):
        y = np.arange(i, min(i + chunk, n), dtype=np.float32)[:, None]
        base = 60 + 0.4 * (y + x) * (160 / max(n, 1)) + 30 * np.sin(x / 37.0) * np.cos(y / 53.0)
        for k, arr in enumerate(arrs):
            tex = 12 * np.sin((x + 3 * k) / 5.0 + y / 7.0)
            noise = rng.normal(0, 6 + 2 * k, (y.shape[0], n)).astype(np.float32)
            arr[i : i + y.shape[0], :] = np.clip(base + tex + noise, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ reference


def _box_sum_int64(f: np.ndarray, w: int) -> np.ndarray:
    """Exact 2-D window sums (zero padding = shrink), int64 summed-area table."""
    lo, hi = w // 2, w - 1 - w // 2
    p = np.pad(f.astype(np.int64), ((lo + 1, hi), (lo + 1, hi)))
    p = p.cumsum(0).cumsum(1)
    h, wd = f.shape
    return p[w : w + h, w : w + wd] - p[:h, w : w + wd] - p[w : w + h, :wd] + p[:h, :wd]


def check_outputs(src: str, n: int, w: int, outputs: dict[str, tuple[str, str, int]], band: int) -> dict[str, bool]:
    """Compare each output ``(path, array, size)`` (size: the crop it covers) with the exact
    result, band by band; returns name -> equal."""
    import zarr

    g = zarr.open_group(src, mode="r")
    a, b = _member(g, "a"), _member(g, "b")
    lo, hi = w // 2, w - 1 - w // 2
    outs = {k: (_member(zarr.open_group(p, mode="r"), arr), size) for k, (p, arr, size) in outputs.items()}
    ok = {k: True for k in outs}
    for size in sorted({s for _, s in outs.values()}):
        for i in range(0, size, band):
            r0, r1 = max(i - lo, 0), min(i + band + hi, size)
            fa = np.asarray(a[r0:r1, :size]).astype(np.int64)
            fb = np.asarray(b[r0:r1, :size]).astype(np.int64)
            ref = _box_sum_int64(fa * fa - fb * fb, w)[i - r0 : i - r0 + min(band, size - i)]
            for k, (arr, s) in outs.items():
                if s == size and ok[k]:
                    got = np.asarray(arr[i : i + ref.shape[0], :])
                    ok[k] = bool(got.shape == ref.shape and np.array_equal(got.astype(np.int64), ref))
    return ok


# ------------------------------------------------------------------------------ contenders


def _field(a, b):
    af = a.astype("float64")
    bf = b.astype("float64")
    return af * af - bf * bf


def _to_int(x, w):
    import dask.array as da

    return da.rint(x * (w * w)).astype("int32")


def _run_contender(name: str, src: str, out: str, w: int, size: int, threads: int, ref: str | None) -> dict[str, Any]:
    """Run one contender in this process; returns timing fields."""
    import zarr

    # each contender imports what it uses, before the clock starts; JIT loading is timed (and
    # this project's peak RSS includes numba, but not dask, which its local runs do not load)
    from . import io, runner, zarrchunks  # noqa: F401 - imported before the clock starts

    if name not in ("pipeline", "floor"):
        import dask
        import dask.array as da
    if name == "dask-image":
        import dask_image.ndfilters  # noqa: F401
    if name == "xarray":
        import xarray  # noqa: F401
    t0 = time.perf_counter()
    c0 = time.process_time()
    g = zarr.open_group(src, mode="r")
    if name.startswith("pipeline"):
        return _run_pipeline(name.partition("@")[2] or "threads", src, out, w, threads)
    elif name == "floor":
        from concurrent.futures import ThreadPoolExecutor

        exact = _member(zarr.open_group(ref, mode="r"), "result")
        data = exact[...]  # loaded before the clock starts
        a, b = _member(g, "a"), _member(g, "b")
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
    else:
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
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {"wall": wall, "cpu": cpu, "rss": peak_rss()}


def _run_pipeline(mode: str, src: str, out: str, w: int, threads: int) -> dict[str, Any]:
    """``pipeline.run`` on ``mode``; the session's start-up timed apart."""
    from . import runner, sessions
    from .config import parse_config

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
            from . import engine

            engine.prime(engine.Job(runner.prepare(cfg), None, None, "bench"))
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        c0 = time.process_time()
        runner.run(cfg, session=sess)
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


class _TcpCluster:
    """``dask scheduler`` and ``n`` ``dask worker`` processes (1 thread each) on loopback."""

    def __init__(self, folder: Path, n: int) -> None:
        self.file = folder / "scheduler.json"
        self.file.unlink(missing_ok=True)
        py = [sys.executable, "-m"]
        quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.procs = [
            subprocess.Popen([*py, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                              "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(self.file)], **quiet)
        ]
        deadline = time.monotonic() + 60
        while not self.file.exists():
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("dask scheduler did not start")
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]
        for _ in range(n):
            self.procs.append(
                subprocess.Popen([*py, "distributed.cli.dask_worker", "--scheduler-file", str(self.file), "--nthreads", "1",
                                  "--nworkers", "1", "--memory-limit", "0", "--no-nanny"], **quiet)
            )

    def close(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


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


def _du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def _spawn(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pipeline.bench", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def available(name: str) -> bool:
    mod = {"dask-image": "dask_image", "xarray": "xarray"}.get(name)
    if mod is None:
        return True
    import importlib.util

    return importlib.util.find_spec(mod) is not None


# ------------------------------------------------------------------------------ kernel section


def kernel_bench(n: int, windows: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    """In-memory kernels on one thread (run in a subprocess with 1-thread BLAS/OpenMP)."""
    from scipy import ndimage

    from . import api, kernels

    rng = np.random.default_rng(1)
    A = rng.integers(0, 256, (n, n), dtype=np.uint8)
    B = rng.integers(0, 256, (n, n), dtype=np.uint8)

    def med(fn):
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return sorted(ts)[len(ts) // 2]

    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # noqa: BLE001
        cv2 = None
    t = time.perf_counter()
    api.window_reduce(OP, {"a": A[:64, :64], "b": B[:64, :64]}, size=3)
    first = time.perf_counter() - t
    rows = []
    for w in windows:
        exact = _box_sum_int64(A.astype(np.int64) ** 2 - B.astype(np.int64) ** 2, w)
        lo, hi = w // 2, w - 1 - w // 2
        cands = {
            "window_reduce": lambda: api.window_reduce(OP, {"a": A, "b": B}, size=w),
            "numpy path": lambda: kernels.window_sum(
                A.astype(np.int32) ** 2 - B.astype(np.int32) ** 2, (0, 1), (lo, lo), (hi, hi), (0, 0), (n, n)
            ),
            "scipy uniform_filter": lambda: np.rint(
                ndimage.uniform_filter(A.astype(np.float64) ** 2 - B.astype(np.float64) ** 2, w, mode="constant") * (w * w)
            ).astype(np.int32),
        }
        if cv2 is not None:
            cands["OpenCV boxFilter"] = lambda: cv2.boxFilter(
                A.astype(np.int32) ** 2 - B.astype(np.int32) ** 2, cv2.CV_32S, (w, w), normalize=False,
                borderType=cv2.BORDER_CONSTANT,
            )
        for name, fn in cands.items():
            try:
                ok = bool(np.array_equal(fn(), exact))
                sec = med(fn)
            except Exception as e:  # noqa: BLE001 - an unsupported peer is reported, not fatal
                rows.append({"W": w, "kernel": name, "error": str(e)[:80]})
                continue
            rows.append({"W": w, "kernel": name, "mpix_s": n * n / 1e6 / sec, "exact": ok, "seconds": sec})
    rows.append({"first_call_seconds": first})
    return rows


# ------------------------------------------------------------------------------ driver


def run_bench(
    *,
    size: int = 16384,
    chunk: int = 2048,
    windows: Sequence[int] = (3, 63),
    threads: int = 2,
    workdir: str = "bench-data",
    store: str | None = None,
    peers: Sequence[str] = ("dask-image", "xarray", "map_overlap"),
    peer_size: dict[str, int] | None = None,
    kernel_size: int = 4096,
    kernel_windows: Sequence[int] = (3, 15, 63),
    repeats: int = 1,
    keep: bool = False,
    schedulers: Sequence[str] = (),
    echo=print,
) -> dict[str, Any]:
    """Run the whole benchmark; returns the JSON-able results."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    src = store or str(work / f"pair-{size}.zarr")
    if store is None and not Path(src).exists():
        t = time.perf_counter()
        make_pair(src, size, chunk)
        echo(f"generated {src} ({size}x{size} uint8 pair, chunks {chunk}) in {time.perf_counter() - t:.1f} s")
    import zarr

    shape = _member(zarr.open_group(src, mode="r"), "a").shape
    n = shape[0]
    results: dict[str, Any] = {"size": n, "chunk": chunk, "threads": threads, "cores": os.cpu_count(), "store": src, "runs": []}
    thread_env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    tcp = None
    modes = [f"pipeline@{m}" for m in schedulers]
    try:
        if "tcp" in schedulers:
            tcp = _TcpCluster(work, threads)
            thread_env["PIPELINE_BENCH_SCHEDULER"] = tcp.address
            echo(f"tcp: dask scheduler at {tcp.address} with {threads} dask worker processes of 1 thread")
        for w in windows:
            outputs = {}
            for name in ("pipeline", *modes, *peers, "floor"):
                if not available(name):
                    results["runs"].append({"W": w, "contender": name, "error": "not installed (pip install '.[bench]')"})
                    continue
                crop = min(n, (peer_size or {}).get(f"{name}@{w}", (peer_size or {}).get(name, n)))
                if name == "floor":
                    crop = n
                runs: list[dict[str, Any]] = []
                for _ in range(max(1, repeats)):
                    out = str(work / f"out-{name}-{w}.zarr")
                    _remove_output(out)
                    args = ["_contender", name, src, out, str(w), str(crop), str(threads), str(work / f"out-pipeline-{w}.zarr")]
                    r = _spawn(args, thread_env)
                    if "error" in r:
                        runs = []
                        break
                    runs.append(r)
                # the median run by wall time (the lower middle one for an even count)
                best = sorted(runs, key=lambda run: run["wall"])[(len(runs) - 1) // 2] if runs else None
                if best is None:
                    results["runs"].append({"W": w, "contender": name, "error": r["error"]})
                    echo(f"W={w} {name}: FAILED {r['error']}")
                    continue
                row = {"W": w, "contender": name, "pixels": crop * crop, "crop": crop, **best}
                row["mpix_s"] = crop * crop / 1e6 / best["wall"]
                row["cpu_wall"] = best["cpu"] / best["wall"]
                row["disk"] = _du(out)
                results["runs"].append(row)
                if name != "floor":
                    outputs[name] = (out, "result", crop)
                extra = ""
                if "startup" in best:
                    extra = f", start-up {best['startup']:.2f} s (not counted)"
                if best.get("worker_rss"):
                    extra += f", worker RSS {best['worker_rss'] / 2**20:.0f} MiB"
                echo(f"W={w} {name}: {row['mpix_s']:.1f} Mpix/s, {best['wall']:.2f} s, RSS {best['rss'] / 2**20:.0f} MiB{extra}")
            ok = check_outputs(src, n, w, outputs, band=chunk)
            for row in results["runs"]:
                if row["W"] == w and row["contender"] in ok:
                    row["exact"] = ok[row["contender"]]
            if not keep:
                for name in ("pipeline", *modes, *peers, "floor"):
                    _remove_output(str(work / f"out-{name}-{w}.zarr"))
        if kernel_size:
            results["kernel"] = _spawn(
                ["_kernel", str(kernel_size), ",".join(map(str, kernel_windows)), "5" if kernel_size >= 2048 else "3"], thread_env
            )
    finally:
        if tcp is not None:
            tcp.close()
        if not keep and store is None:
            shutil.rmtree(src, ignore_errors=True)
    _ratios(results)
    return results


def _remove_output(out: str) -> None:
    """A contender's output and this project's sidecar beside it (lock, ledger)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out + ".pipeline", ignore_errors=True)


def _ratios(results: dict[str, Any]) -> None:
    for w in {r["W"] for r in results["runs"]}:
        rows = {r["contender"]: r for r in results["runs"] if r["W"] == w and "wall" in r}
        ours, floor = rows.get("pipeline"), rows.get("floor")
        for r in rows.values():
            if ours:
                r["speedup_vs_this"] = ours["mpix_s"] / r["mpix_s"]  # how many times faster this project is
            if floor:
                r["wall_vs_floor"] = floor["mpix_s"] / r["mpix_s"]  # time per pixel, relative to the floor


def table(results: dict[str, Any]) -> str:
    head = "| W | contender | image | wall s | Mpix/s | this project ×faster | × codec floor | peak RSS MiB | CPU/wall | disk MB | exact |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results["runs"]:
        if "wall" not in r:
            lines.append(f"| {r['W']} | {r['contender']} | | | | | | | | | {r['error']} |")
            continue
        exact = {True: "yes", False: "NO"}.get(r.get("exact"), "(reference)" if r["contender"] == "floor" else "?")
        lines.append(
            f"| {r['W']} | {r['contender']} | {r['crop']}² | {r['wall']:.2f} | {r['mpix_s']:.1f} | "
            f"{r.get('speedup_vs_this', float('nan')):.1f} | {r.get('wall_vs_floor', float('nan')):.2f} | "
            f"{_rss(r)} | {r['cpu_wall']:.2f} | {r['disk'] / 1e6:.1f} | {exact} |"
        )
    k = results.get("kernel")
    if isinstance(k, list):
        lines += ["", "| W | kernel (in memory, 1 thread) | Mpix/s | exact |", "|---|---|---|---|"]
        for r in k:
            if "kernel" in r:
                val = f"{r['mpix_s']:.0f} | {'yes' if r['exact'] else 'NO'}" if "mpix_s" in r else f"| {r['error']}"
                lines.append(f"| {r['W']} | {r['kernel']} | {val} |")
            elif "first_call_seconds" in r:
                lines.append(f"\nfirst window_reduce call in a fresh process (imports excluded, JIT load/compile included): {r['first_call_seconds']:.2f} s")
    elif isinstance(k, dict):
        lines.append(f"kernel section failed: {k.get('error')}")
    return "\n".join(lines)


def _rss(r: dict[str, Any]) -> str:
    text = f"{r['rss'] / 2**20:.0f}"
    if r.get("worker_rss"):
        text += f" (worker {r['worker_rss'] / 2**20:.0f})"
    if "startup" in r:
        text += f"; start-up {r['startup']:.1f} s"
    return text


def _main(argv: list[str]) -> None:
    if argv[0] == "_contender":
        name, src, out, w, size, threads, ref = argv[1:8]
        print(json.dumps(_run_contender(name, src, out, int(w), int(size), int(threads), ref)))
    elif argv[0] == "_kernel":
        n, windows, repeats = int(argv[1]), [int(x) for x in argv[2].split(",")], int(argv[3])
        print(json.dumps(kernel_bench(n, windows, repeats)))
    else:  # pragma: no cover
        raise SystemExit(f"unknown: {argv[0]}")


if __name__ == "__main__":
    _main(sys.argv[1:])
