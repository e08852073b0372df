"""Issue 21's reproductions, printed one line each: run on a tree before and after the fix, e.g.
``PYTHONPATH=<tree> python scripts/repro_issue21.py`` (the same cases are tests in tests/)."""

import fractions
import warnings

import numpy as np

import pipeline


def tryit(label, f):
    try:
        print(label, "->", f())
    except Exception as e:
        print(label, "-> raises", type(e).__name__, (str(e).splitlines() or [""])[0][:110])


a3 = np.arange(60.0).reshape(3, 4, 5)
tryit("1. N-D mean reflect shape", lambda: pipeline.window_reduce("a", {"a": a3}, size=[3, 3, 3], axes=[0, 1, 2], reduce="mean", mode="reflect").shape)


def nd_err():
    from scipy.ndimage import uniform_filter

    r = pipeline.window_reduce("a", {"a": a3}, size=[3, 3, 3], axes=[0, 1, 2], reduce="mean", mode="reflect")
    return float(np.abs(r - uniform_filter(a3, 3, mode="reflect")).max()) if r.shape == a3.shape else "shape differs"


tryit("1. N-D max |diff| vs scipy uniform_filter", nd_err)
x = np.array([1e16, 1, -1e16, 1, 1, 1, 1, 1])
tryit("2. [1e16,1,-1e16,1,...] size 2 nearest sum", lambda: pipeline.window_reduce("a", {"a": x}, size=[2], reduce="sum", mode="nearest").tolist())
rng = np.random.default_rng(0)
img = (500 + rng.standard_normal((200, 200))).astype(np.float32)
img[100, 100] = -3.4e38


def far():
    r = pipeline.window_reduce("a", {"a": img}, size=5, reduce="mean", mode="reflect")
    from numpy.lib.stride_tricks import sliding_window_view

    ref = sliding_window_view(np.pad(img.astype(np.float64), 2, mode="symmetric"), (5, 5)).mean(axis=(-2, -1))
    far = np.ones(img.shape, bool)
    far[96:105, 96:105] = False
    return f"max |err| in windows without the pixel: {float(np.abs(r - ref)[far].max()):.3g}"


tryit("2. float32 5x5 mean, one -3.4e38 pixel", far)
d = rng.integers(0, 200, (45, 57)).astype(np.int32)


def intvar():
    v = pipeline.window_reduce("a", {"a": d}, size=5, reduce="var", mode="reflect")
    p = np.pad(d.astype(object), 2, mode="symmetric")
    bad = 0
    for i in range(45):
        for j in range(57):
            w = [int(t) for t in p[i : i + 5, j : j + 5].ravel()]
            n = len(w)
            s1 = sum(w)
            s2 = sum(t * t for t in w)
            if float(fractions.Fraction(n * s2 - s1 * s1, n * n)) != v[i, j]:
                bad += 1
    return f"{bad} of {45 * 57} windows not correctly rounded"


tryit("4. int32 [0,200) 5x5 var", intvar)


def zero_fp():
    return pipeline.window_reduce("a", {"a": d}, footprint=np.zeros((3, 3), bool), reduce="max").shape


tryit("crash: all-zero footprint max", zero_fp)
tryit("crash: all-zero weights max", lambda: pipeline.window_reduce("a", {"a": d}, weights=np.zeros((3, 3)), reduce="max").shape)
tryit("crash: float16 mean", lambda: pipeline.window_reduce("a", {"a": d.astype(np.float16)}, size=3, reduce="mean").dtype)


def transposed():
    from scipy.ndimage import correlate

    w = np.arange(6.0).reshape(2, 3)
    f = d.astype(float)
    r = pipeline.window_reduce("a", {"a": f}, weights=w, axes=[1, 0], reduce="sum", mode="reflect")
    return float(np.abs(r - correlate(f, w, mode="reflect", axes=(1, 0))).max())


tryit("weights axes=[1,0] max |diff| vs scipy.correlate", transposed)


def narrow():
    import dask.array as da

    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        pipeline.window_reduce("a", {"a": da.from_array(np.ones((64, 64)), chunks=((1, 63), (64,)))}, size=9, reduce="sum").compute()
    return [str(w.message)[:90] for w in ws] or "no warning"


tryit("dask chunks ((1,63),(64,)) halo 4", narrow)


def origin():
    from scipy.ndimage import uniform_filter

    f = d.astype(float)
    r = pipeline.window_reduce("a", {"a": f}, size=3, origin=1, reduce="mean", mode="reflect")
    return float(np.abs(r - uniform_filter(f, 3, origin=1, mode="reflect")).max())


tryit("origin=1 mean max |diff| vs scipy", origin)
