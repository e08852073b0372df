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
  :class:`pipeline.storage.zarrchunks.DirectChunks` as this project does; no computation.

Peers that are too slow at full size (``--peer-size``) run on the top-left crop of the pair,
said in the table.  ``--fast`` is a smoke test small enough for CI.  A kernel section times the
in-memory kernels on one thread (``window_reduce`` against scipy's ``uniform_filter`` path, the
numpy-only reference path and OpenCV's ``boxFilter`` when installed).

This module is the driver (the pair, the exact reference, the runs, the kernel section); the
contenders are :mod:`pipeline.bench.contenders`, the table :mod:`pipeline.bench.report`, the ``tcp``
scheduler's processes :mod:`pipeline.execution.tcpcluster`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.bench.contenders import OP, member, peak_rss, run_contender
from pipeline.bench.report import progress_line, ratios, table
from pipeline.execution.tcpcluster import TcpCluster

__all__ = ["CONTENDERS", "OP", "SCHEDULERS", "available", "check_outputs", "kernel_bench", "make_pair", "peak_rss", "run_bench", "table"]

CONTENDERS = ("pipeline", "dask-image", "xarray", "map_overlap", "floor")
SCHEDULERS = ("local-cluster", "processes", "tcp")


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
    a, b = member(g, "a"), member(g, "b")
    lo, hi = w // 2, w - 1 - w // 2
    outs = {k: (member(zarr.open_group(p, mode="r"), arr), size) for k, (p, arr, size) in outputs.items()}
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


def _du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def _spawn(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pipeline.bench.compare", *args]
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

    from pipeline.api import reduce
    from pipeline.kernels import reference

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
    reduce.window_reduce(OP, {"a": A[:64, :64], "b": B[:64, :64]}, size=3)
    first = time.perf_counter() - t
    rows = []
    for w in windows:
        exact = _box_sum_int64(A.astype(np.int64) ** 2 - B.astype(np.int64) ** 2, w)
        lo, hi = w // 2, w - 1 - w // 2
        cands = {
            "window_reduce": lambda: reduce.window_reduce(OP, {"a": A, "b": B}, size=w),
            "numpy path": lambda: reference.window_sum(
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
    src = _pair(work, store, size, chunk, echo)
    import zarr

    n = member(zarr.open_group(src, mode="r"), "a").shape[0]
    results: dict[str, Any] = {"size": n, "chunk": chunk, "threads": threads, "cores": os.cpu_count(), "store": src, "runs": []}
    bench = _Bench(work, src, n, threads, {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
                   peer_size or {}, repeats, echo, results["runs"])
    names = ("pipeline", *[f"pipeline@{m}" for m in schedulers], *peers, "floor")
    tcp = None
    try:
        if "tcp" in schedulers:
            tcp = TcpCluster(work, threads)
            bench.env["PIPELINE_BENCH_SCHEDULER"] = tcp.address
            echo(f"tcp: dask scheduler at {tcp.address} with {threads} dask worker processes of 1 thread")
        for w in windows:
            bench.window(w, names, band=chunk, keep=keep)
        if kernel_size:
            results["kernel"] = _spawn(
                ["_kernel", str(kernel_size), ",".join(map(str, kernel_windows)), "5" if kernel_size >= 2048 else "3"], bench.env
            )
    finally:
        if tcp is not None:
            tcp.close()
        if not keep and store is None:
            shutil.rmtree(src, ignore_errors=True)
    ratios(results)
    return results


def _pair(work: Path, store: str | None, size: int, chunk: int, echo: Callable[[str], Any]) -> str:
    """The input pair: ``store``, or one generated in ``work`` (kept there if it exists)."""
    src = store or str(work / f"pair-{size}.zarr")
    if store is None and not Path(src).exists():
        t = time.perf_counter()
        make_pair(src, size, chunk)
        echo(f"generated {src} ({size}x{size} uint8 pair, chunks {chunk}) in {time.perf_counter() - t:.1f} s")
    return src


@dataclass
class _Bench:
    """The contenders' runs on one pair: each in a subprocess, repeated, the median kept."""

    work: Path
    src: str
    n: int  #: the pair's side
    threads: int
    env: dict[str, str]  #: for the subprocesses (1-thread BLAS/OpenMP, the tcp scheduler)
    peer_size: dict[str, int]  #: crops per contender (``name`` or ``name@W``)
    repeats: int
    echo: Callable[[str], Any]
    runs: list[dict[str, Any]]  #: the results' rows, appended to

    def window(self, w: int, names: Sequence[str], *, band: int, keep: bool) -> None:
        """Every contender at window size ``w``, then each output checked against the exact result."""
        outputs = {}
        for name in names:
            out = self.contender(w, name)
            if out is not None:
                outputs[name] = out
        ok = check_outputs(self.src, self.n, w, outputs, band=band)
        for row in self.runs:
            if row["W"] == w and row["contender"] in ok:
                row["exact"] = ok[row["contender"]]
        if not keep:
            for name in names:
                _remove_output(self._out(name, w))

    def contender(self, w: int, name: str) -> tuple[str, str, int] | None:
        """Run ``name`` and add its row; the output to check (path, array, crop), if any."""
        if not available(name):
            self.runs.append({"W": w, "contender": name, "error": "not installed (pip install '.[bench]')"})
            return None
        crop = min(self.n, self.peer_size.get(f"{name}@{w}", self.peer_size.get(name, self.n)))
        if name == "floor":
            crop = self.n
        best, error = self._median_run(w, name, crop)
        if best is None:
            self.runs.append({"W": w, "contender": name, "error": error})
            self.echo(f"W={w} {name}: FAILED {error}")
            return None
        out = self._out(name, w)
        row = {"W": w, "contender": name, "pixels": crop * crop, "crop": crop, **best}
        row["mpix_s"] = crop * crop / 1e6 / best["wall"]
        row["cpu_wall"] = best["cpu"] / best["wall"]
        row["disk"] = _du(out)
        self.runs.append(row)
        self.echo(progress_line(row))
        return (out, "result", crop) if name != "floor" else None

    def _median_run(self, w: int, name: str, crop: int) -> tuple[dict[str, Any] | None, str | None]:
        """``repeats`` runs of ``name``: the median by wall time (the lower middle one for an even
        count), or the error of the first run that failed."""
        runs: list[dict[str, Any]] = []
        for _ in range(max(1, self.repeats)):
            out = self._out(name, w)
            _remove_output(out)
            args = ["_contender", name, self.src, out, str(w), str(crop), str(self.threads), self._out("pipeline", w)]
            r = _spawn(args, self.env)
            if "error" in r:
                return None, r["error"]
            runs.append(r)
        return sorted(runs, key=lambda run: run["wall"])[(len(runs) - 1) // 2], None

    def _out(self, name: str, w: int) -> str:
        return str(self.work / f"out-{name}-{w}.zarr")


def _remove_output(out: str) -> None:
    """A contender's output and this project's sidecar beside it (lock, ledger)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out + ".pipeline", ignore_errors=True)


def _main(argv: list[str]) -> None:
    if argv[0] == "_contender":
        name, src, out, w, size, threads, ref = argv[1:8]
        print(json.dumps(run_contender(name, src, out, int(w), int(size), int(threads), ref)))
    elif argv[0] == "_kernel":
        n, windows, repeats = int(argv[1]), [int(x) for x in argv[2].split(",")], int(argv[3])
        print(json.dumps(kernel_bench(n, windows, repeats)))
    else:  # pragma: no cover
        raise SystemExit(f"unknown: {argv[0]}")


if __name__ == "__main__":
    _main(sys.argv[1:])
