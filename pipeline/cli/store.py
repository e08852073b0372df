"""``pipeline verify`` and ``pipeline info``: an output store read back, chunk by chunk or as
its metadata."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.common import guard
from pipeline.errors import ExitCode


def verify(
    path: Annotated[str, typer.Argument(metavar="STORE", help="An output Zarr store.", show_default=False)],
    array: Annotated[str | None, typer.Option("--array", metavar="NAME", help="Only this array (default: all).")] = None,
    no_mark: Annotated[
        bool, typer.Option("--no-mark", help="Only report; do not mark bad blocks for recomputation.")
    ] = False,
) -> None:
    """Read every chunk; report damaged (checksum/decoding) and missing chunks by key.

    Bad blocks are marked so that rerunning the output's config recomputes them.  Exit code 0:
    all good; 1: damage or missing chunks found.
    """
    from pipeline.config.load import check_url
    from pipeline.runner import verify as verify_mod

    guard(check_url, str(path), "path")
    reports = guard(verify_mod.verify, path, array=array, mark=not no_mark)
    for rep in reports:
        for line in rep.lines():
            typer.echo(line)
    if not all(rep.ok for rep in reports):
        raise typer.Exit(int(ExitCode.FAILURE))


def info(path: Annotated[str, typer.Argument(metavar="STORE", help="A Zarr store (group or array) or a GeoTIFF.", show_default=False)]) -> None:
    """Shape, dtype, chunks, codecs, attributes, CRS and bounds of the arrays in a Zarr store or a GeoTIFF.

    The CRS is shown as EPSG where it has one, with the bounds and resolution of georeferenced
    arrays; a GeoTIFF (a COG output) also shows its tiles, compression, overviews and nodata.
    """
    from pipeline.config.load import check_url
    from pipeline.storage import io

    guard(check_url, path, "path")
    typer.echo(guard(io.describe_store, path))
