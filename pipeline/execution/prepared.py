"""A prepared run: the validated config, the opened inputs (lazily) and the plan.

:func:`pipeline.runner.prepare.prepare` makes it; the engine (:mod:`pipeline.execution.engine`)
and the runner consume it.  It lives here, below both, so that neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.config.load import Config
from pipeline.plan.planner import ArraySpec, Plan


@dataclass
class Prepared:
    """A validated run: config, opened inputs (lazily), and the plan."""

    config: Config
    arrays: dict[str, Any]  #: name -> zarr.Array, for the inputs the expression uses
    specs: dict[str, ArraySpec]
    plan: Plan
    coords: dict[str, Any] = field(default_factory=dict)  #: output dim -> 1-D coordinate array (lazy)
    attrs: dict[str, Any] = field(default_factory=dict)  #: attributes common to the used inputs
    #: per input: where its nodata comes from ("config", "attribute _FillValue", "off", ...), if any
    nodata_source: dict[str, str] = field(default_factory=dict)
    #: the inputs' grid-mapping (CRS) variable, carried to the output: (name, value, attributes)
    grid_mapping: tuple[str, Any, dict[str, Any]] | None = None
    #: the used inputs as :class:`~pipeline.storage.sources.InputSource` (``arrays`` holds their arrays)
    sources: dict[str, Any] = field(default_factory=dict)
