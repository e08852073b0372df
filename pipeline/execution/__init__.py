"""Where and how the blocks run: the one block-task engine, tiling, sessions (dask's local
schedulers or a dask.distributed cluster), clusters and the checks a session makes first.

:class:`~pipeline.execution.prepared.Prepared` (a run's opened inputs, plan and outputs) is
defined here, below the runner that makes it and the engine that consumes it.

May import: pipeline.errors, pipeline.expr, pipeline.plan, pipeline.config, pipeline.storage, pipeline.kernels.
"""
