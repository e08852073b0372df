"""The plan: pure geometry and dtype decisions, made before anything is read or written.

Owns the reducer and boundary registries (:mod:`~pipeline.plan.registry`), the window
(:mod:`~pipeline.plan.window`), the processing grid (:mod:`~pipeline.plan.grid`), the output
dtypes and fill values (:mod:`~pipeline.plan.dtypes`), what input attributes say and which
attributes are true of an output (:mod:`~pipeline.plan.metadata`), and the plan itself
(:mod:`~pipeline.plan.planner`).  No I/O.

May import: pipeline.errors, pipeline.expr.
"""
