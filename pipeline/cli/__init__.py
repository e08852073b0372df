"""The ``pipeline`` command: thin Typer wrappers (:mod:`~pipeline.cli.main`) that call the
library and print.

May import: any sub-package.
"""
