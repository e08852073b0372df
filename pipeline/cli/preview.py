"""``pipeline preview``: a quicklook PNG of an output (:mod:`pipeline.storage.quicklook`)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.common import guard


def preview(
    path: Annotated[str, typer.Argument(help="An output: a Zarr store or a GeoTIFF/COG.", show_default=False)],
    png: Annotated[str, typer.Option("--png", help="The PNG to write (and a .pgw world file beside it when georeferenced).", show_default=False)],
    array: Annotated[str | None, typer.Option("--array", help="The array to show (default: the output array).")] = None,
    max_size: Annotated[int, typer.Option("--max-size", min=16, help="The quicklook's longest side, in pixels.")] = 2048,
) -> None:
    """Write a quicklook PNG of an output (a Zarr store or a GeoTIFF), memory bounded.

    Longest side at most --max-size pixels, read from the pyramid when there is one; a 2-98
    percentile stretch, a diverging colour map for signed results, missing pixels transparent.
    """
    from pipeline.config.load import check_url
    from pipeline.storage import quicklook

    guard(check_url, path, "path")
    rows, cols = guard(quicklook.preview, path, png, array=array, max_side=max_size)
    typer.echo(f"wrote {png} ({cols} x {rows} pixels)")
