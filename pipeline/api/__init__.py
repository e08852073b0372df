"""The Python API: :func:`~pipeline.api.reduce.window_reduce` on numpy, dask and xarray arrays,
:func:`~pipeline.api.reduce.run` on configs, and the xarray accessor.

May import: pipeline.errors, pipeline.expr, pipeline.plan, pipeline.config, pipeline.storage, pipeline.kernels, pipeline.execution, pipeline.runner.
"""
