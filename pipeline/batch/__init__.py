"""Batches for scheduled runs: configs times sets of template values, the batch's log, its
report files and metrics.  :mod:`~pipeline.batch.runbatch` is the entry point.

May import: pipeline.errors, pipeline.expr, pipeline.plan, pipeline.config, pipeline.storage, pipeline.kernels, pipeline.execution, pipeline.runner.
"""
