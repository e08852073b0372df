"""What makes a run resumable: the fingerprint document (what a result depends on), its
per-part digests for saying what changed, and the resume ledger of an output (local disk:
:mod:`pipeline.storage.ledger`; object storage: :mod:`pipeline.storage.urlledger`), with the blocks whose
chunks went missing forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import InputError
from pipeline.storage import io, ledger, urlledger

if TYPE_CHECKING:
    from pipeline.config.load import Config
    from pipeline.execution.prepared import Prepared
    from pipeline.plan.planner import Plan
    from pipeline.storage.targets import OutputTarget


def fingerprint_doc(prep: Prepared) -> dict[str, Any]:
    """What a run's result depends on: the config's part that changes the output values
    (:func:`fingerprint_config`), the package version, each used input's identity and the output
    grid."""
    from pipeline._version import version

    plan = prep.plan
    return {
        "version": version(),
        "config": fingerprint_config(prep.config),
        "inputs": {
            n: prep.sources[n].identity()
            for n in prep.arrays
        },
        "grid": grid(plan),
        # nodata taken from attributes or switched off: not visible in the config dump
        **({"nodata": {n: [plan.nodata.get(n), src] for n, src in prep.nodata_source.items()}}
           if any(src != "config" for src in prep.nodata_source.values()) else {}),
    }


#: config keys that do not change the output values, left out of the fingerprint: how and where
#: the work runs (``compute``), where the output goes and whether it may be replaced, how the
#: stores are reached (credentials included: rotating a key keeps the outputs), and when an input
#: counts as ready (adding a ready marker keeps a complete output complete)
NOT_VALUES = {"output": ("path", "array", "overwrite", "storage_options"), "input": ("storage_options", "ready_marker", "unstored_chunks")}


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    """The config as the fingerprint holds it: without the keys of :data:`NOT_VALUES`, the
    inputs' paths without credentials (:func:`pipeline.config.redact.url`)."""
    from pipeline.config import redact

    doc = cfg.model_dump(mode="json")
    doc.pop("compute", None)
    for key in NOT_VALUES["output"]:
        doc["output"].pop(key, None)
    for spec in doc["inputs"].values():
        for key in NOT_VALUES["input"]:
            spec.pop(key, None)
        spec["path"] = redact.url(spec["path"])
    return doc


def check_inputs_unchanged(prep: Prepared, doc: Mapping[str, Any]) -> None:
    """Raise :class:`InputError` naming the first input whose identity is no longer the one in
    ``doc`` (taken when the run started): an input rewritten during the run leaves an output
    that matches neither version, which must not be marked complete."""
    for name, ident in doc["inputs"].items():
        if ledger.fingerprint(prep.sources[name].identity()) != ledger.fingerprint(ident):
            raise InputError(
                f"input {prep.sources[name].name} changed while this run read it; the output is not marked complete: "
                "rerun with --overwrite once the input is final",
                where=f"inputs.{name}",
            )


def grid(plan: Plan) -> dict[str, Any]:
    """The output grid as the fingerprint and the ledger record it."""
    return {
        "shape": list(plan.out_shape),
        "dtype": str(plan.out_dtype),
        "chunks": list(plan.object_shape),  # the stored objects: shards when sharded
        "edges": [[int(x) for x in np.cumsum((0,) + tuple(c))] for c in plan.out_chunks],
    }


def parts(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A digest per part of the fingerprint document, stored in the output's ``pipeline``
    attribute so that a refusal can say what changed."""
    return {
        "version": doc["version"],
        "config": ledger.fingerprint(doc["config"])[:16],
        "grid": ledger.fingerprint(doc["grid"])[:16],
        "inputs": {n: ledger.fingerprint(v)[:16] for n, v in doc["inputs"].items()},
    }


def what_changed(doc: Mapping[str, Any], present: Sequence[Mapping[str, Any]]) -> str:
    """What differs from the run that wrote the existing output, for the refusal message."""
    old = next((st.get("parts") for st in present if isinstance(st.get("parts"), dict)), None)
    if not any(st for st in present):
        return "it has no pipeline attribute: not written by pipeline"
    if old is None:
        return "written by an older pipeline: the changed part is not recorded"
    new = parts(doc)
    what = []
    if old.get("version") != new["version"]:
        what.append(f"pipeline version was {str(old.get('version'))[:40]}, now {new['version']}")
    if old.get("config") != new["config"]:
        what.append("the config changed")
    old_inputs = old.get("inputs") if isinstance(old.get("inputs"), dict) else {}
    changed = [n for n in new["inputs"] if old_inputs.get(n) != new["inputs"][n]]
    if changed:
        what.append("the data or metadata of input " + ", ".join(changed) + " changed")
    if not what and old.get("grid") != new["grid"]:
        what.append("the output grid changed")
    return "; ".join(what) or "some of its statistics' arrays are missing"


def find_ledger(cfg: Config, store: str, array: str, fp: str) -> Any:
    """The ledger of an earlier run with fingerprint ``fp`` and its grid, or None."""
    if io.is_local(cfg.output.path):
        return ledger.find(store, array, fp)
    return urlledger.find(cfg.output.path, array, fp, cfg.output.storage_options)


def new_ledger(cfg: Config, store: str, array: str, fp: str) -> Any:
    """A ledger for a fresh run (call ``reset(grid)`` before recording)."""
    if io.is_local(cfg.output.path):
        return ledger.Ledger(store, array, fp)
    return urlledger.Ledger(cfg.output.path, array, fp, cfg.output.storage_options)


def missing_chunks(
    target: OutputTarget, handle: Any, grid: dict[str, Any], done: set[tuple[int, ...]], led: Any
) -> set[tuple[int, ...]]:
    """Blocks recorded as done whose chunks are not all stored (deleted, lost): forgotten."""
    stored = target.stored_chunk_keys(handle)
    lost = {b for b in done if any(target.chunk_key(handle, c) not in stored for c in ledger.block_chunks(grid, b))}
    led.drop(lost)
    return lost
