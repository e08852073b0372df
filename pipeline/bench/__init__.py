"""``pipeline bench``: this project against its peers, each contender in its own process, and
the in-memory kernel grid.

May import: pipeline.errors, pipeline.expr, pipeline.plan, pipeline.config, pipeline.storage, pipeline.kernels, pipeline.execution, pipeline.runner, pipeline.api.
"""
