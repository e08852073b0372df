"""Running one config: prepare, the outputs and their metadata, resume and repair, input
readiness, the dry run, and ``verify``.  :mod:`~pipeline.runner.runconfig` is the entry point.

May import: pipeline.errors, pipeline.expr, pipeline.plan, pipeline.config, pipeline.storage, pipeline.kernels, pipeline.execution.
"""
