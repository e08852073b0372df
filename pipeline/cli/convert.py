"""``pipeline convert``: a GeoTIFF/COG, TIFF or PNG file to a Zarr v3 store, chunk by chunk
(the library part: :mod:`pipeline.storage.convert`)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.common import guard


def convert(
    src: Annotated[str, typer.Argument(metavar="IN", help="A GeoTIFF/COG, TIFF or PNG file.", show_default=False)],
    dst: Annotated[str, typer.Argument(metavar="OUT", help="The Zarr store to write (e.g. out.zarr).", show_default=False)],
    array: Annotated[str, typer.Option("--array", help="The array's name in the store.")] = "data",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
) -> None:
    """Convert a GeoTIFF/COG, TIFF or PNG file to a Zarr v3 array.

    Dimension names, tile-aligned chunks of 1-4 MiB, a GeoTIFF's CRS, transform and nodata.
    """
    from pipeline.storage import convert as conv

    typer.echo(guard(conv.convert, src, dst, array=array, overwrite=overwrite))
