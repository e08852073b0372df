"""Everything that touches bytes at rest: store paths and URLs, Zarr chunk keys and listings,
the halo-aware chunk cache, input sources (:mod:`~pipeline.storage.sources`), output targets
(:mod:`~pipeline.storage.targets`), the resume ledgers, the output lock, path safety, the
compiled-kernel cache, and image files copied to Zarr (:mod:`~pipeline.storage.convert`).

May import: pipeline.errors, pipeline.expr, pipeline.plan, pipeline.config.
"""
