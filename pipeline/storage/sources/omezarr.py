"""OME-Zarr (NGFF 0.4 and 0.5) multiscale images as Zarr inputs: which level to read and the
names of its axes.

A group with NGFF ``multiscales`` metadata (``attrs["multiscales"]`` in 0.4,
``attrs["ome"]["multiscales"]`` in 0.5) holds one array per resolution level, listed
full resolution first.  An input naming such a group (``path`` the image, ``array`` unset or the
group inside the store) reads level 0, or the level ``inputs.<name>.level`` names (its index in
the list, or its path); an input naming a level's array directly (``array: "0"``) reads that one.
Either way the axes' names (``c``, ``z``, ``y``, ``x``, ...) become the input's dimension names
where the array has none of its own, so a (c, y, x) image needs no ``window.axes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import zarr

from pipeline.errors import InputError
from pipeline.storage import stores


def multiscales(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first ``multiscales`` entry of a group's attributes (NGFF 0.5 or 0.4), or None."""
    ome = attrs.get("ome")
    found = ome.get("multiscales") if isinstance(ome, Mapping) else attrs.get("multiscales")
    if isinstance(found, list) and found and isinstance(found[0], Mapping) and found[0].get("datasets"):
        return dict(found[0])
    return None


def axis_names(ms: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The axes' names (NGFF 0.4+: objects with ``name`` and ``type``; 0.3: plain names)."""
    axes = ms.get("axes")
    if not isinstance(axes, list) or not axes:
        return None
    names = [a.get("name") if isinstance(a, Mapping) else a for a in axes]
    return tuple(str(n) for n in names) if all(isinstance(n, str) for n in names) else None


def level_path(ms: Mapping[str, Any], level: int | str | None, where: str) -> str:
    """The path (inside the image group) of level ``level``: an index (0: full resolution, the
    default) or one of the datasets' paths."""
    paths = [str(d.get("path")) for d in ms["datasets"] if isinstance(d, Mapping)]
    if level is None:
        return paths[0]
    if isinstance(level, int) and not isinstance(level, bool):
        if 0 <= level < len(paths):
            return paths[level]
    elif str(level) in paths:
        return str(level)
    raise InputError(f"no level {level!r} in this multiscale image (levels 0 to {len(paths) - 1}: paths {', '.join(paths)})", where=f"{where}.level")


def _group_attrs(path: str, inner: str, storage_options: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    try:
        return zarr.open_group(**stores.store_args(path, storage_options), mode="r", path=inner).attrs.asdict()
    except Exception:  # noqa: BLE001 - not a group (an array, nothing): no multiscale metadata
        return None


def resolve(
    path: str, array: str | None, level: int | str | None, *, where: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[str | None, tuple[str, ...] | None]:
    """The array path to open and the NGFF axis names (None where the input is no multiscale
    image), for an input ``array`` of the store at ``path``."""
    inner = (array or "").strip("/")
    attrs = _group_attrs(path, inner, storage_options)
    ms = multiscales(attrs) if attrs is not None else None
    if ms is not None:
        chosen = level_path(ms, level, where)
        return (f"{inner}/{chosen}" if inner else chosen), axis_names(ms)
    if level is not None:
        raise InputError(f"'level' applies to multiscale (OME-Zarr) images; {stores.location(path, array)} has no NGFF multiscales metadata", where=f"{where}.level")
    if inner:  # a level's array named directly: the axes of the image group above it
        parent, _, leaf = inner.rpartition("/")
        up = _group_attrs(path, parent, storage_options)
        ms = multiscales(up) if up is not None else None
        if ms is not None and leaf in [str(d.get("path")) for d in ms["datasets"] if isinstance(d, Mapping)]:
            return array, axis_names(ms)
    return array, None
