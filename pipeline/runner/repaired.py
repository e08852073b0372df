"""Resuming after a damaged input chunk was repaired: the blocks already done stand.

A run that stops on an input chunk that cannot be read (:class:`~pipeline.errors.InputError`
with a ``damaged_chunk`` attribute) records, in its ledger folder (``damaged.json``, local
outputs and local inputs only), the chunk's key and region and the input's identity *without
that chunk's file* (:func:`pipeline.storage.sources.zarr.local_identity` with ``skip``) - only when the
input's whole identity is still the one the run started with (nothing else changed during the
run).  Repairing the chunk changes the input's identity, hence the fingerprint; the rerun then
adopts the old ledger (:func:`adopt`) when all of this holds:

* the package version, the config's part in the fingerprint and the output grid are unchanged
  (the digests of the output's ``parts``);
* every input whose identity changed has a record, and its identity without the recorded
  chunks is the recorded one: every other file of it (and its metadata) is the same file,
  unchanged (same name, size, mtime, ctime and inode) since the failed run started, so every
  byte a done block read from it is the same;
* the input is read at its full shape (no broadcasting).

Adopting drops from the ledger every done block whose input footprint (its input block, plus the
halo, wrapped around on periodic axes) touches a recorded chunk.  So the blocks that stand read
no byte that may differ now: not the repaired chunk (a chunk that failed to read cannot have fed
a completed block, but a transient read error could have let one through before the repair
changed its bytes - those blocks are dropped anyway), and nothing else, which is unchanged.
They are exactly what a fresh run computes; the dropped ones are recomputed.  The output arrays'
``fingerprint`` and ``parts`` and the ledger's are then the new ones, and the run resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipeline.storage import io, ledger

if TYPE_CHECKING:
    from pipeline.execution.prepared import Prepared
    from pipeline.storage.targets import OutputTarget

RECORD = "damaged.json"


def record(prep: Prepared, led: Any, doc: Mapping[str, Any], exc: BaseException) -> None:
    """Record the damaged input chunk ``exc`` names in the ledger ``led`` (see the module
    docstring; nothing when it does not apply)."""
    from pipeline.execution.engine import _where

    found = getattr(exc, "damaged_chunk", None)
    if not isinstance(led, ledger.Ledger) or not isinstance(found, Mapping):
        return
    name = next((n for n in doc["inputs"] if _where(prep, n) == found.get("where")), None)
    if name is None or not io.is_local(prep.config.inputs[name].path):
        return
    keys = [str(found["key"])]
    if ledger.fingerprint(prep.sources[name].identity()) != ledger.fingerprint(doc["inputs"][name]):
        return  # changed during the run: done blocks may have read either version
    rec = {name: {"keys": keys, "regions": [found["region"]], "without": _without(prep, name, keys)}}
    tmp = led.root / (RECORD + ".tmp")
    try:  # a record not written costs the reuse, never the run's own error
        tmp.write_text(json.dumps({"fingerprint": led.fp, "inputs": rec}))
        os.replace(tmp, led.root / RECORD)
    except OSError:
        return


def _without(prep: Prepared, name: str, keys: Sequence[str]) -> str:
    """The digest of input ``name``'s identity with the files ``keys`` left out."""
    from pipeline.storage.sources.zarr import local_identity

    ident = dict(prep.sources[name].identity())
    spec = prep.config.inputs[name]
    ident["files"] = local_identity(os.path.join(io.local_path(spec.path), spec.array or ""), skip=set(keys))
    return ledger.fingerprint(ident)


def adopt(prep: Prepared, target: OutputTarget, store: str, names: Sequence[str], fp: str, doc: Mapping[str, Any]) -> bool:
    """Move the ledger of the output arrays ``names`` (or of their staged replacements), all
    written by one earlier run whose fingerprint differs from ``fp`` only by a repaired damaged
    chunk, to ``fp``, dropping the blocks that read near it, and give the arrays the new
    fingerprint; whether it did."""
    if not io.is_local(prep.config.output.path):
        return False
    candidates = [target]
    if target.can_swap:  # a replacement staged beside the output, if one is there and is ours
        try:
            candidates.append(target.staged(fresh=False))
        except Exception:  # noqa: BLE001 - a staging place not ours is refused later, by the run itself
            pass
    for place in candidates:
        try:
            states = [place.state(n) for n in names]
        except Exception:  # noqa: BLE001 - nothing staged there
            continue
        old = {st.get("fingerprint") for st in states if st is not None}
        if None in states or len(old) != 1 or fp in old:
            continue
        found = ledger.find(store, prep.config.output.array, str(old.pop()))
        new = ledger.Ledger(store, prep.config.output.array, fp)
        if found is None or new.root.exists():
            continue
        stale = _stale(prep, found[0], states[0] or {}, doc)
        if stale is not None:
            _move(place, found[0], new, stale, found[1], list(names), doc)
            return True
    return False


def _move(
    target: OutputTarget, led: ledger.Ledger, new: ledger.Ledger, stale: set[tuple[int, ...]], grid: Mapping[str, Any],
    arrays: Sequence[str], doc: Mapping[str, Any],
) -> None:
    """Drop the ``stale`` blocks, move the ledger ``led`` to ``new`` and give ``arrays`` its
    fingerprint."""
    from pipeline.runner import resume

    led.drop(stale)
    os.replace(led.root, new.root)
    (new.root / RECORD).unlink()
    (new.root / "grid.json").write_text(json.dumps({**grid, "fingerprint": new.fp}))
    for n in arrays:  # incomplete: the dropped blocks are computed again (a transient error may have let the run finish)
        target.update_state(target.open_array(n), fingerprint=new.fp, parts=resume.parts(doc), complete=False)
    target.finalize()


def _stale(prep: Prepared, led: ledger.Ledger, state: Mapping[str, Any], doc: Mapping[str, Any]) -> set[tuple[int, ...]] | None:
    """The done blocks to drop when the old run differs from ``doc`` only by the recorded
    damaged chunks; None when it differs otherwise (or the record is missing or malformed)."""
    try:
        rec = json.loads((led.root / RECORD).read_text())
        if rec["fingerprint"] != led.fp or not _only_damage(prep, rec["inputs"], state["parts"], doc):
            return None
        return stale_blocks(prep, led.done(), rec["inputs"])
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):  # no record, or not one this tool wrote
        return None


def _only_damage(prep: Prepared, damage: Mapping[str, Any], old: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    """Whether the fingerprint parts ``old`` differ from ``doc``'s only in inputs with a
    ``damage`` record whose identity without the recorded chunks is unchanged."""
    from pipeline.runner import resume

    new = resume.parts(doc)
    if any(old[k] != new[k] for k in ("version", "config", "grid")) or set(old["inputs"]) != set(new["inputs"]):
        return False
    for name, digest in new["inputs"].items():
        if old["inputs"][name] == digest:
            continue
        if name not in damage or tuple(prep.sources[name].shape) != prep.plan.in_shape:
            return False
        if _without(prep, name, [str(k) for k in damage[name]["keys"]]) != damage[name]["without"]:
            return False
    return True


def stale_blocks(prep: Prepared, done: set[tuple[int, ...]], damaged: Mapping[str, Any]) -> set[tuple[int, ...]]:
    """The blocks of ``done`` whose input footprint touches a recorded damaged region."""
    regions = [r for d in damaged.values() for r in d["regions"]]
    return {b for b in done if any(all(_touches(prep, ax, k, r[ax]) for ax, k in enumerate(b)) for r in regions)}


def _touches(prep: Prepared, ax: int, k: int, span: Sequence[int]) -> bool:
    """Whether block ``k``'s input footprint on axis ``ax`` (its input block +- the halo,
    wrapped on periodic axes, clipped to the image) meets ``[span[0], span[1])``."""
    plan = prep.plan
    n, d = plan.in_shape[ax], plan.depth[ax]
    s = sum(plan.in_chunks[ax][:k])
    lo, hi = s - d, s + plan.in_chunks[ax][k] + d
    spans = [(max(lo, 0), min(hi, n))]
    if ax in plan.wrap_axes:
        spans += [(n + lo, n), (0, hi - n)]
    return any(a < span[1] and span[0] < b for a, b in spans)
