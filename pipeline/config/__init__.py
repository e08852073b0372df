"""The run config: YAML read safely, templates and ``--set`` overrides, the pydantic schema,
validation, store-path policy, and the redacted copy that outputs record as provenance.

:mod:`~pipeline.config.load` is the facade (``load_config``, ``parse_config``, ``Config``).
No store is opened here.

May import: pipeline.errors, pipeline.expr, pipeline.plan.
"""
