"""The ``pipeline`` command: thin Typer wrappers that call the library and print.

A user error (:class:`PipelineError`) becomes one line on stderr and its exit code (2 for a bad
config or input); any other exception is an internal failure: one line and exit code 1, with the
traceback under ``--debug``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import ExitCode, PipelineError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Exact moving-window reductions of pointwise expressions over huge Zarr images.",
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def _fail(exc: BaseException) -> None:
    if _state["debug"]:
        raise exc
    if isinstance(exc, PipelineError):
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(int(exc.exit_code))
    typer.echo(f"internal error: {exc.__class__.__name__}: {exc} (rerun with --debug for the traceback)", err=True)
    raise typer.Exit(int(ExitCode.FAILURE))


def _guard(fn, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except typer.Exit:
        raise
    except KeyboardInterrupt as exc:
        if _state["debug"]:
            raise
        res = getattr(exc, "pipeline_result", None)
        kept = f"; {res.skipped + res.computed} of {res.blocks} blocks are done and kept" if res is not None else ""
        why = f" by {exc.args[0]}" if exc.args else ""
        typer.echo(f"interrupted{why}{kept}; rerun the same config to resume", err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        _fail(exc)


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    _state["debug"] = debug


SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Override compute.scheduler (and compute.cluster): threads, processes, synchronous, "
        "local-cluster, or a scheduler address such as tcp://host:8786 or tls://host:8786.",
        show_default=False,
    ),
]


def _load(config: Path, scheduler: str | None) -> Any:
    """The config as given (a path), or loaded with ``--scheduler`` applied."""
    if scheduler is None:
        return config
    from .config import load_config, with_scheduler

    return with_scheduler(load_config(config), scheduler)


@app.command()
def run(
    configs: Annotated[list[Path], typer.Argument(help="YAML run configs (globs are expanded).", show_default=False)],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key: --set window.size=5 (repeatable).")
    ] = None,
    var: Annotated[
        list[str] | None, typer.Option("--var", help="Define a ${NAME} template variable: --var NAME=VALUE (repeatable).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an output written by a different config (same as output.overwrite: true).")
    ] = False,
    report: Annotated[Path | None, typer.Option("--report", help="Write a JSON record per config to this file.")] = None,
    log_format: Annotated[str, typer.Option("--log-format", help="text (default) or json lines on stderr.")] = "text",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    scheduler: SchedulerOption = None,
) -> None:
    """Run configs: read the inputs, compute the window reduction, write the output Zarr.

    Several configs run one after another; one failure does not stop the rest, and the exit code
    is non-zero if any failed.  A rerun of the same config resumes an interrupted run, or does
    nothing if the output is complete ("up to date").  SIGTERM/SIGINT stop cleanly (exit code 4)."""

    def go() -> int:
        from . import batch
        from .config import parse_assignment, scheduler_overrides

        log = batch.Log(log_format, quiet=quiet)
        variables = dict(os.environ)
        for text in var or ():
            name, value = parse_assignment(text, option="--var")
            variables[name] = value
        overrides = list(set_ or ()) + scheduler_overrides(scheduler)
        records = batch.run_batch(
            configs, overrides=overrides, variables=variables, overwrite=overwrite, log=log, debug=_state["debug"]
        )
        if report is not None:
            batch.write_report(report, records)
        if len(records) > 1:
            log.event("summary", batch.summary_table(records), exit_code=batch.batch_exit_code(records))
        return batch.batch_exit_code(records)

    previous = signal.signal(signal.SIGTERM, _interrupt)  # before the (slow) imports
    try:
        code = _guard(go)
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(code)


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (what SLURM and systemd send first) stops the run like Ctrl-C: blocks in flight
    are abandoned, blocks done stay recorded, the lock is released, exit code 4."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


@app.command()
def verify(
    path: Annotated[str, typer.Argument(help="An output Zarr store.", show_default=False)],
    array: Annotated[str | None, typer.Option("--array", help="Only this array (default: all).")] = None,
    no_mark: Annotated[
        bool, typer.Option("--no-mark", help="Only report; do not mark bad blocks for recomputation.")
    ] = False,
) -> None:
    """Read every chunk; report damaged (checksum/decoding) and missing chunks by key.

    Bad blocks are marked so that rerunning the output's config recomputes them.  Exit code 0:
    all good; 1: damage or missing chunks found.
    """
    from . import verify as verify_mod

    reports = _guard(verify_mod.verify, path, array=array, mark=not no_mark)
    for rep in reports:
        for line in rep.lines():
            typer.echo(line)
    if not all(rep.ok for rep in reports):
        raise typer.Exit(int(ExitCode.FAILURE))


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="YAML run config.", show_default=False)],
    scheduler: SchedulerOption = None,
) -> None:
    """Check a config and its inputs without computing or writing anything; print the plan
    (and, for compute.cluster, the job script that would be submitted)."""
    from . import runner, runtime

    prep = _guard(runner.prepare, _guard(_load, config, scheduler))
    cfg = prep.config
    typer.echo(f"config OK: {config}")
    for name, spec in prep.specs.items():
        used = "" if name in prep.plan.expr.names else "  (not used by op)"
        typer.echo(f"input {name}: {spec.source} shape {spec.shape} {spec.dtype} chunks {spec.chunks}{used}")
    typer.echo(prep.plan.describe())
    typer.echo(f"output:        {cfg.output.path}:{cfg.output.array}" + (" (overwrite)" if cfg.output.overwrite else ""))
    typer.echo(f"scheduler:     {runtime.describe(cfg)}")
    if cfg.compute.cluster is not None:
        script = _guard(runtime.job_script, cfg)
        typer.echo(f"job script ({cfg.compute.cluster.kind}, not submitted; the scheduler address is filled in at run time):")
        typer.echo(script.rstrip("\n"))


@app.command()
def info(path: Annotated[str, typer.Argument(help="A Zarr store (group or array).", show_default=False)]) -> None:
    """Shape, dtype, chunks, codecs and attributes of the arrays in a Zarr store."""
    from . import io

    typer.echo(_guard(io.describe_store, path))


@app.command()
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
    kernels: Annotated[bool, typer.Option("--kernels", help="Only the in-memory kernel grid (reducer × boundary × dtype × nodata × W, one thread, against scipy).")] = False,
    reducers: Annotated[str, typer.Option(help="--kernels: reducers, comma-separated.")] = "sum,mean,var,std,count,min,max",
    boundaries: Annotated[str, typer.Option(help="--kernels: boundaries, comma-separated.")] = "shrink,valid,constant,reflect,mirror,nearest,wrap",
    dtypes: Annotated[str, typer.Option(help="--kernels: input dtypes, comma-separated.")] = "uint8,uint16,int32,float32,float64",
    nodata: Annotated[str, typer.Option(help="--kernels: 'both', 'no' or 'yes' (1% missing pixels).")] = "both",
) -> None:
    """Benchmark this project against dask-image, xarray rolling and map_overlap + scipy on the
    same Zarr pair, check every output against the exact result, print a table."""
    import json

    from . import bench as b

    if kernels:
        from . import benchgrid

        side, ws, reps = (256, "3,15", 3) if fast else (kernel_size or 4096, windows if windows != "3,63" else "3,15,63", max(repeats, 3))
        grid = _guard(
            benchgrid.kernel_grid,
            side,
            [int(w) for w in ws.split(",")],
            reducers=[r for r in reducers.split(",") if r],
            boundaries=[x for x in boundaries.split(",") if x],
            dtypes=[d for d in dtypes.split(",") if d],
            nodata=nodata,
            repeats=reps,
            echo=lambda line: typer.echo(line, err=True),
        )
        typer.echo(benchgrid.grid_table(grid))
        if json_out is not None:
            json_out.write_text(json.dumps(grid, indent=2))
            typer.echo(f"wrote {json_out}")
        return

    if fast:
        size, chunk, windows, kernel_size = 512, 128, "3,15", 256
    crops = {}
    for item in peer_size:
        key, _, value = item.partition("=")
        crops[key] = int(value)
    results = _guard(
        b.run_bench,
        size=size,
        chunk=chunk,
        windows=[int(w) for w in windows.split(",")],
        threads=threads,
        workdir=str(workdir),
        store=store,
        peers=[] if peers == "none" else [p.strip() for p in peers.split(",") if p.strip()],
        peer_size=crops,
        kernel_size=kernel_size,
        repeats=repeats,
        keep=keep,
        echo=lambda line: typer.echo(line, err=True),
    )
    typer.echo(b.table(results))
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2))
        typer.echo(f"wrote {json_out}")


def entrypoint() -> None:  # pragma: no cover - console script
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
