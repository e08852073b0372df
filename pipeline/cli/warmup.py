"""``pipeline warmup``: compile every kernel family into the caches (:mod:`pipeline.api.warmup`)."""

from __future__ import annotations

import typer

from pipeline.cli.common import guard


def warmup() -> None:
    """Compile every kernel family (each reduction, each common input dtype, with and without nodata) into the kernel caches.

    Run it once where the caches will be used: in a container image's build, on a cluster
    node's set-up, or once on a shared cache folder (PIPELINE_CACHE_DIR and NUMBA_CACHE_DIR in
    the workers' environment).  A run then loads compiled kernels instead of compiling them."""
    from pipeline.api import warmup as warmup_mod
    from pipeline.storage import kernelcache

    n = guard(warmup_mod.warmup, notify=lambda line: typer.echo(line, err=True))
    typer.echo(f"{n} kernel combinations compiled; cache: {kernelcache.cache_dir()}")
