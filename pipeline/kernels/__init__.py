"""The math: per-block window reductions that take arrays and return arrays, no I/O.

The numpy reference (:mod:`~pipeline.kernels.reference`), exact float block sums
(:mod:`~pipeline.kernels.blocksum`), the compiled kernels (numba: sums, moments, extremes, the
fused expression loops) and the one dispatch point from a plan to results
(:mod:`~pipeline.kernels.ops`).  The compiled-kernel cache on disk is storage's
(:mod:`pipeline.storage.kernelcache`); numba is imported in :mod:`~pipeline.kernels.jit` only.

May import: pipeline.errors, pipeline.expr, pipeline.plan, pipeline.storage.kernelcache.
"""
