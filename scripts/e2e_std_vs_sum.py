"""End to end: the integer shrink sum against the float64 local std with reflect edges, on the same
generated uint8 pair (``pipeline.bench.compare.make_pair``), op ``a**2 - b**2``, W = 15, 2 threads, the
median of the runs (alternated).  Usage: ``python scripts/e2e_std_vs_sum.py SIDE RUNS [WORKDIR]``."""
import os
import shutil
import sys
import time

import numpy as np

import pipeline
from pipeline.bench import compare
from pipeline.runner import runconfig

n, reps = int(sys.argv[1]), int(sys.argv[2])
work = sys.argv[3] if len(sys.argv) > 3 else "bench-data"
os.makedirs(work, exist_ok=True)
src = f"{work}/pair-{n}.zarr"
if not os.path.exists(src):
    t = time.perf_counter()
    compare.make_pair(src, n, 2048)
    print(f"pair {time.perf_counter() - t:.1f} s", flush=True)
pipeline.window_reduce("a", {"a": np.zeros((64, 64), np.uint8)}, size=3)  # JIT load outside
pipeline.window_reduce("a - b", {"a": np.zeros((64, 64), np.uint8), "b": np.zeros((64, 64), np.uint8)}, size=3, reduce="std", boundary="reflect")
cases = {"int sum shrink": dict(), "float64 std reflect": dict(reduce="std", boundary="reflect")}
res = {k: [] for k in cases}
for r in range(reps):
    for name, win in cases.items():
        out = f"{work}/out.zarr"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        runconfig.run({"inputs": {"a": {"path": src, "array": "a"}, "b": {"path": src, "array": "b"}},
                    "op": "a**2 - b**2", "window": {"size": 15, **win},
                    "output": {"path": out, "overwrite": True},
                    "compute": {"scheduler": "threads", "workers": 2}})
        res[name].append(time.perf_counter() - t)
        print(name, f"{res[name][-1]:.2f} s", flush=True)
        shutil.rmtree(out, ignore_errors=True)
med = {k: sorted(v)[(len(v) - 1) // 2] for k, v in res.items()}
print(med, "ratio", med["float64 std reflect"] / med["int sum shrink"])
