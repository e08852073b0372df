"""``pipeline bench``: this project against dask-image, xarray rolling and map_overlap + scipy
end to end (:mod:`pipeline.bench.compare`), or the in-memory kernel grid (:mod:`pipeline.bench.kernelgrid`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.common import guard
from pipeline.errors import ConfigError


def bench(
    size: Annotated[int, typer.Option(help="Side of the generated square uint8 pair.")] = 16384,
    chunk: Annotated[int, typer.Option(help="Storage chunk side of the generated pair.")] = 2048,
    windows: Annotated[str, typer.Option(help="Window sizes, comma-separated.")] = "3,63",
    threads: Annotated[int, typer.Option(help="Threads for every contender.")] = 2,
    workdir: Annotated[Path, typer.Option(help="Where the pair and outputs go (deleted afterwards unless --keep).")] = Path("bench-data"),
    store: Annotated[str | None, typer.Option(help="Use this Zarr group (arrays a and b) instead of generating a pair.")] = None,
    peers: Annotated[str, typer.Option(help="Peers to run, comma-separated (dask-image, xarray, map_overlap), or 'none'.")] = "dask-image,xarray,map_overlap",
    peer_size: Annotated[list[str], typer.Option(help="NAME[@W]=SIDE: run that peer on a top-left crop (slow peers).")] = [],  # noqa: B006
    kernel_size: Annotated[int, typer.Option(help="Side of the in-memory kernel benchmark (0: skip).")] = 4096,
    repeats: Annotated[int, typer.Option(help="Runs per contender (the median run is reported).")] = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
    fast: Annotated[bool, typer.Option(help="A tiny smoke run (512², chunks 128, W 3 and 15).")] = False,
    keep: Annotated[bool, typer.Option(help="Keep generated data and outputs.")] = False,
    schedulers: Annotated[
        str, typer.Option(help="Also run this project on these schedulers, comma-separated: local-cluster, processes, tcp (or 'none').")
    ] = "none",
    kernels: Annotated[bool, typer.Option("--kernels", help="Only the in-memory kernel grid (reducer × boundary × dtype × nodata × W, one thread, against scipy).")] = False,
    reducers: Annotated[str, typer.Option(help="--kernels: reducers, comma-separated.")] = "sum,mean,var,std,count,min,max",
    boundaries: Annotated[str, typer.Option(help="--kernels: boundaries, comma-separated.")] = "shrink,valid,constant,reflect,mirror,nearest,wrap",
    dtypes: Annotated[str, typer.Option(help="--kernels: input dtypes, comma-separated.")] = "uint8,uint16,int32,float32,float64",
    nodata: Annotated[str, typer.Option(help="--kernels: 'both', 'no' or 'yes' (1% missing pixels).")] = "both",
    scipy: Annotated[bool, typer.Option("--scipy/--no-scipy", help="--kernels: time scipy's equivalents too (most of a full grid's time).")] = True,
) -> None:
    """Benchmark against dask-image, xarray rolling and map_overlap + scipy; print a table.

    Every contender runs on the same Zarr pair and every output is checked against the exact
    result."""
    if kernels:
        side, ws, reps = (256, "3,15", 3) if fast else (kernel_size or 4096, windows if windows != "3,63" else "3,15,63", max(repeats, 3))
        _kernel_grid(side, ws, reps, reducers=reducers, boundaries=boundaries, dtypes=dtypes, nodata=nodata, scipy=scipy, json_out=json_out)
        return
    if fast:
        size, chunk, windows, kernel_size = 512, 128, "3,15", 256
    from pipeline.bench import compare as b

    crops = {key: guard(_int_list, value, "--peer-size")[0] for key, _, value in (item.partition("=") for item in peer_size)}
    results = guard(
        b.run_bench,
        size=size,
        chunk=chunk,
        windows=guard(_int_list, windows, "--windows"),
        threads=threads,
        workdir=str(workdir),
        store=store,
        peers=[] if peers == "none" else [p.strip() for p in peers.split(",") if p.strip()],
        peer_size=crops,
        kernel_size=kernel_size,
        repeats=repeats,
        keep=keep,
        schedulers=guard(_bench_schedulers, schedulers),
        echo=lambda line: typer.echo(line, err=True),
    )
    _show(b.table(results), results, json_out)


def _kernel_grid(side: int, windows: str, repeats: int, *, reducers: str, boundaries: str, dtypes: str, nodata: str, scipy: bool, json_out: Path | None) -> None:
    """``bench --kernels``: the in-memory kernel grid against scipy.ndimage, one thread."""
    from pipeline.bench import kernelgrid

    grid = guard(
        kernelgrid.kernel_grid,
        side,
        guard(_int_list, windows, "--windows"),
        reducers=[r for r in reducers.split(",") if r],
        boundaries=[x for x in boundaries.split(",") if x],
        dtypes=[d for d in dtypes.split(",") if d],
        nodata=nodata,
        repeats=repeats,
        scipy=scipy,
        echo=lambda line: typer.echo(line, err=True),
    )
    _show(kernelgrid.grid_table(grid), grid, json_out)


def _show(table: str, results: Any, json_out: Path | None) -> None:
    """The results' table on stdout; with ``--json``, the results written there too."""
    import json

    typer.echo(table)
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2))
        typer.echo(f"wrote {json_out}")


def _int_list(text: str, option: str) -> list[int]:
    """``3,63`` as [3, 63]; anything else a one-line user error naming the option."""
    try:
        values = [int(w) for w in text.split(",")]
    except ValueError:
        raise ConfigError(f"expected positive integers separated by commas, got {text[:60]!r}", where=option) from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"expected positive integers separated by commas, got {text[:60]!r}", where=option)
    return values


def _bench_schedulers(text: str) -> list[str]:
    from pipeline.bench.compare import SCHEDULERS

    names = [] if text == "none" else [p.strip() for p in text.split(",") if p.strip()]
    bad = [n for n in names if n not in SCHEDULERS]
    if bad:
        raise ConfigError(f"unknown scheduler {bad[0]!r}: must be {', '.join(SCHEDULERS)} or none", where="--schedulers")
    return names
