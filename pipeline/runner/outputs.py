"""The output arrays of a run, whatever the format: their names (one per statistic), the
provenance and attributes each carries, the coordinates (trimmed where the boundary shrinks the
output), and creating them through the run's :class:`~pipeline.storage.targets.OutputTarget`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.plan import metadata
from pipeline.storage.targets import OutputArray

if TYPE_CHECKING:
    from pipeline.execution.prepared import Prepared
    from pipeline.plan.planner import Plan
    from pipeline.storage.targets import OutputTarget


def output_names(plan: Plan, array: str) -> dict[str, str]:
    """The output array per statistic: ``array`` for one statistic, ``<array>_<stat>`` for
    several."""
    if not plan.multi:
        return {plan.stats[0]: array}
    return {st: f"{array}_{st}" for st in plan.stats}


def provenance(prep: Prepared) -> dict[str, Any]:
    """The ``pipeline`` attribute's record of what was run, credentials redacted
    (:mod:`pipeline.config.redact`)."""
    from pipeline._version import version
    from pipeline.config import redact

    cfg = prep.config
    return {
        "version": version(),
        "config": redact.config(cfg.model_dump(mode="json")),
        "inputs": {
            n: {
                "path": redact.url(cfg.inputs[n].path),
                "array": cfg.inputs[n].array,
                "shape": list(prep.specs[n].shape),
                "dtype": str(prep.specs[n].dtype),
            }
            for n in prep.plan.expr.names
        },
        "op": prep.plan.expr.text,
        "window": {"size": list(prep.plan.size), "reduce": prep.plan.reduce, "boundary": prep.plan.boundary},
    }


def out_coords(prep: Prepared) -> dict[str, np.ndarray]:
    """The output's 1-D coordinates: the first used input's, trimmed on the axes the boundary
    shrinks (:func:`pipeline.plan.metadata.output_span`)."""
    plan = prep.plan
    out = {}
    for ax, dim in enumerate(plan.dims):
        if dim not in prep.coords:
            continue
        values = np.asarray(prep.coords[dim][...])
        span = metadata.output_span(plan, ax)
        if span is not None:
            values = values[span]
        out[dim] = values
    return out


def output_scalars(prep: Prepared) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The grid-mapping (CRS) variable carried from the inputs, its ``GeoTransform`` moved where
    the boundary shrinks the output."""
    plan, gm = prep.plan, prep.grid_mapping
    if gm is None:
        return {}
    name_gm, value, gm_attrs = gm
    gm_attrs = dict(gm_attrs)
    if plan.bnd.shrinks and "GeoTransform" in gm_attrs and len(plan.window_axes) == 2:
        shifted = metadata.shifted_geotransform(gm_attrs["GeoTransform"], plan.lo)
        if shifted is None:
            gm_attrs.pop("GeoTransform")
        else:
            gm_attrs["GeoTransform"] = shifted
    return {name_gm: (value, gm_attrs)}


def create_outputs(
    prep: Prepared, target: OutputTarget, names: Mapping[str, str], state: Mapping[str, Any], *, overwrite: bool,
    coords: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Create the output array of each statistic, its ``pipeline`` attribute holding ``state``."""
    plan = prep.plan
    handles = {}
    gm = prep.grid_mapping
    scalars = output_scalars(prep)
    for st, name in names.items():
        fill = plan.fill_values.get(st)
        attrs = metadata.output_attrs(
            prep.attrs,
            statistic=st,
            same_units=metadata.same_units(plan.expr.text, plan.expr.names),
            bare=plan.expr.text.strip() in plan.expr.names,
            fill=fill,
            dtype=plan.out_dtypes[st],
            grid_mapping=gm[0] if gm is not None else None,
        )
        attrs["pipeline"] = {**provenance(prep), "statistic": st, **state}
        spec = OutputArray(
            shape=plan.out_shape,
            dtype=plan.out_dtypes[st],
            chunks=plan.storage_chunks,
            shards=plan.shards,
            dims=plan.dims,
            attrs=attrs,
            coords=out_coords(prep) if coords is None else coords,
            scalars=scalars,
            fill_value=fill if fill is not None else 0,
        )
        handles[st] = target.create_array(name, spec, overwrite=overwrite)
    return handles
