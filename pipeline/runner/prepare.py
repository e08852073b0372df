"""Preparing a run: open the inputs (metadata only), decide each input's nodata, plan, and check
the output path, before anything is written.  ``pipeline validate`` and ``pipeline run`` share
it, so a bad config or input never touches the disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.config.load import Config, load_config
from pipeline.errors import ConfigError
from pipeline.execution.prepared import Prepared
from pipeline.plan import metadata
from pipeline.plan.dtypes import stored_nodata
from pipeline.plan.planner import Plan, check_inputs, make_plan
from pipeline.runner.outputs import output_names
from pipeline.storage import io, ledger, safety, sources, targets


def prepare(config: Config | str | os.PathLike[str] | Mapping[str, Any]) -> Prepared:
    """Validate a config against its inputs and plan the run; reads metadata only."""
    cfg = config if isinstance(config, Config) else load_config(config)
    opened: dict[str, sources.InputSource] = {}
    zarrs = {}
    specs = {}
    for name, spec in cfg.inputs.items():
        src = opened[name] = sources.open_source(
            spec.path, spec.array, where=f"inputs.{name}", storage_options=spec.storage_options, band=spec.band, level=spec.level
        )
        zarrs[name] = src.array
        specs[name] = sources.spec_of(name, src)
        check_inputs([specs[name]])  # dtype, emptiness: named by store and array
    nodata, nodata_source = _nodata(cfg, zarrs)
    plan = make_plan(
        cfg.op,
        specs,
        size=cfg.window.size,
        reduce=cfg.window.reduce,
        boundary=cfg.window.boundary,
        chunks=cfg.compute.chunks,
        cval=cfg.window.cval,
        shape=cfg.window.shape,
        weights=cfg.window.weights,
        axes=cfg.window.axes,
        origin=cfg.window.origin,
        nodata=nodata,
        dtype=cfg.output.dtype,
        fill_value=cfg.output.fill_value,
        shards=cfg.output.shards,
    )
    used = {n: zarrs[n] for n in plan.expr.names}
    sources.check_same_grid({n: opened[n] for n in plan.expr.names})
    io.check_not_overlapping(cfg.output.path, {n: cfg.inputs[n].path for n in plan.expr.names}, cfg.output.array)
    targets.open_target(cfg.output.path, cfg.output.storage_options, cfg.output.format).check_path()
    if cfg.output.multiscale and len(plan.out_shape) < 2:
        raise ConfigError(f"output.multiscale needs an output of two or more axes; this one has shape {plan.out_shape}", where="output.multiscale")
    first = plan.expr.names[0]
    coords = opened[first].coords()
    attrs = _common_attrs(used)
    gm = attrs.get("grid_mapping")
    gm_name: str | None = gm if isinstance(gm, str) else None
    gm_var = opened[first].scalar(gm_name) if gm_name is not None else None
    grid_mapping = (gm_name, *gm_var) if gm_name is not None and gm_var is not None else None
    _check_local_output(cfg, plan, extra=[grid_mapping[0]] if grid_mapping is not None else ())
    return Prepared(
        config=cfg, arrays=used, specs=specs, plan=plan, coords=coords, attrs=attrs,
        sources={n: opened[n] for n in used},
        nodata_source={n: v for n, v in nodata_source.items() if n in plan.expr.names},
        grid_mapping=grid_mapping,
    )


def _nodata(cfg: Config, arrays: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Each input's nodata: the config's ``nodata`` when set (``null``/``none``: off), else what
    the input's attributes declare (see :func:`metadata.declared_nodata`); and where it comes
    from.  A declared value no pixel can hold (255.5 on integers, 300 on uint8) is ignored."""
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for name, spec in cfg.inputs.items():
        declared = metadata.declared_nodata(arrays[name].attrs)
        values[name], src = metadata.input_nodata(
            declared, arrays[name].dtype, given=spec.nodata_given, value=spec.nodata_value
        )
        if src is not None:
            source[name] = src
    return {n: stored_nodata(v, arrays[n].dtype) for n, v in values.items()}, source


def _check_local_output(cfg: Config, plan: Plan, extra: Sequence[str] = ()) -> None:
    """Where a local output writes or deletes (the sidecar folder with the lock and ledgers, the
    output arrays' folders with their chunks, the coordinate arrays) holds no symlink, and the
    sidecar overlaps no input (a store named ``out.zarr.pipeline`` or a symlink to one)."""
    if not io.is_local(cfg.output.path):
        return
    store = Path(io.local_path(cfg.output.path))
    inputs = {f"inputs.{n}": io.local_path(s.path) for n, s in cfg.inputs.items() if io.is_local(s.path)}
    names = list(output_names(plan, cfg.output.array).values())
    names += [n + sfx for n in names for sfx in (targets.STAGED, targets.RETIRED)]
    safety.check_sidecar(ledger.sidecar(store), [cfg.output.array], inputs)
    others = [d for d in (plan.dims or ()) if d not in names] + list(extra)
    safety.check_tree(store, names + others)


def _common_attrs(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes present with equal values on every input (xarray's 'drop_conflicts')."""
    dicts = [dict(a.attrs) for a in arrays.values()]
    common = dict(dicts[0]) if dicts else {}
    for d in dicts[1:]:
        common = {k: v for k, v in common.items() if k in d and d[k] == v}
    common.pop("_ARRAY_DIMENSIONS", None)
    common.pop("pipeline", None)
    return common  # filtered per output by metadata.output_attrs
