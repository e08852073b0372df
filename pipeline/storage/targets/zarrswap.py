"""The crash-safe replacement (``--overwrite``) of a local Zarr output: staged as a whole new store,
swapped in by one atomic directory exchange, driven by a journal.

Layout, for an output store ``out.zarr`` (its sidecar folder ``out.zarr.pipeline``, see
:mod:`pipeline.storage.ledger`)::

    out.zarr.pipeline/store.pipeline-new   the replacement, a whole Zarr group written there
                                           (root attribute ``pipeline_staged``: the tool's marker)
    out.zarr.pipeline/swap.json            the journal: the swap is decided (written atomically)
    out.zarr.pipeline/store.pipeline-old   the old store (only where the exchange is unavailable)

The swap, once every staged array is marked complete: (1) the journal is written, naming the
fingerprint and the arrays the replacement brings; (2) every entry of the old store that the
replacement does not replace (other arrays, a user's files) is hard-linked into the staged store
(copied where links fail); (3) the staged group takes the old group's attributes and (4) its
consolidated metadata is written; (5) one ``renameat2(RENAME_EXCHANGE)`` exchanges ``out.zarr``
and the staged store (where the OS or file system lacks it: two renames, ``out.zarr`` to
``store.pipeline-old`` then the staged store to ``out.zarr``); (6) the old store, now under the
staging name, is deleted, then (7) the journal.

What a reader sees: ``out.zarr`` is the whole old store (arrays, coordinates, attributes and
consolidated metadata together) until the exchange, and the whole new one from then on, whatever
it reads (xarray, zarr with or without consolidated metadata, ``pipeline verify``).  Without the
exchange, between the two renames ``out.zarr`` does not exist (opening it fails; nothing wrong is
read).  A reader that opened the store *before* the swap and reads chunks after it reads the new
chunk files through the old metadata, as with any replacement in place: reopen after a
replacement.  A process killed at any step leaves the journal; the next run on the output (under
its lock) or ``pipeline verify`` completes the swap from it (:func:`recover`): the staged store is
complete from step (1) on, so an interrupted swap always rolls forward.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import zarr

from pipeline.errors import OutputError
from pipeline.storage import ledger, safety
from pipeline.storage.targets.base import RETIRED, STAGED, checkpoint

#: the staged store, the old store (two-rename fallback) and the journal, in the sidecar folder
STAGED_STORE, RETIRED_STORE, JOURNAL = "store" + STAGED, "store" + RETIRED, "swap.json"
#: the staged store's root attribute: the tool's marker (only a marked staged store is deleted)
MARK = "pipeline_staged"


def staged_path(store: str | os.PathLike[str]) -> Path:
    return ledger.sidecar(store) / STAGED_STORE


def check_staged(store: str | os.PathLike[str]) -> None:
    """Refuse (before anything is computed) a staging place the tool did not make: a file, a
    symlink, or a folder without the tool's marker under ``out.zarr.pipeline/store.pipeline-new``."""
    side = ledger.sidecar(store)
    for name in (STAGED_STORE, JOURNAL):
        p = side / name
        if p.is_symlink() or (p.exists() and (name == JOURNAL) != p.is_file()):
            raise OutputError(f"{p} is not what pipeline writes there; refusing to touch it: move it away", where="output.path")
    p = side / STAGED_STORE
    if p.exists() and not _marked(p):
        raise OutputError(
            f"{p} exists and was not written by pipeline (no {MARK} marker); refusing to replace it: move it away",
            where="output.path",
        )


def _marked(p: Path) -> bool:
    try:
        doc = json.loads((p / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("attributes"), dict) and doc["attributes"].get(MARK) is True


def reset_staged(store: str | os.PathLike[str]) -> str:
    """An empty, marked staged store (a stale one, checked by :func:`check_staged`, deleted first)."""
    check_staged(store)
    p = staged_path(store)
    if p.exists():
        shutil.rmtree(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    zarr.open_group(store=Path(p), mode="w", attributes={MARK: True})
    return str(p)


def swap(store: str | os.PathLike[str], fingerprint: str) -> None:
    """Swap the complete staged store in place of ``store`` (see the module's docstring)."""
    root = Path(store)
    staged = staged_path(store)
    check_staged(store)
    safety.check_tree(staged, list(_arrays(staged)))
    doc = {"fingerprint": fingerprint, "arrays": sorted(_arrays(staged))}
    safety.atomic_write(ledger.sidecar(store) / JOURNAL, json.dumps(doc).encode())
    checkpoint("journal written")
    _complete(root, doc)


def recover(store: str | os.PathLike[str]) -> bool:
    """Complete a swap interrupted after its journal was written (under the output's lock);
    True when there was one."""
    path = ledger.sidecar(store) / JOURNAL
    if not path.is_file() or path.is_symlink():
        return False
    try:
        doc = json.loads(path.read_text())
        safety.check_fingerprint(doc["fingerprint"], str(path))
        arrays = [safety.check_name(a, str(path)) for a in doc["arrays"]]
    except (ValueError, KeyError, TypeError, OSError):
        raise OutputError(f"{path} (an interrupted replacement's journal) is unreadable; move it away", where="output.path") from None
    _complete(Path(store), {"fingerprint": doc["fingerprint"], "arrays": arrays})
    return True


def _complete(root: Path, doc: dict[str, Any]) -> None:
    """Steps (2)-(7), each redone or skipped as the files say: roll forward."""
    side = ledger.sidecar(root)
    staged, retired = side / STAGED_STORE, side / RETIRED_STORE
    if not _is_new(root, doc):
        if not _is_new(staged, doc):
            raise OutputError(
                f"{side / JOURNAL} names a replacement that is neither in {root} nor staged; move the journal away",
                where="output.path",
            )
        if root.is_dir():
            _carry(root, staged, set(doc["arrays"]))
        checkpoint("carried")
        group = zarr.open_group(store=Path(staged), mode="r+", use_consolidated=False)
        own = {k: v for k, v in group.attrs.items() if k == "ome"}  # the replacement's pyramid (pipeline.storage.pyramid)
        group.attrs.put({**{k: v for k, v in _group_attrs(root if root.is_dir() else retired).items() if k != "ome"}, **own})
        checkpoint("staged group attributes")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(staged))
        checkpoint("staged consolidated metadata")
        _exchange_in(root, staged, retired)
    for old in (staged, retired):
        if old.exists():
            shutil.rmtree(old)
    checkpoint("old store deleted")
    os.unlink(side / JOURNAL)
    checkpoint("journal deleted")


def _exchange_in(root: Path, staged: Path, retired: Path) -> None:
    if root.is_dir() and _exchange(str(root), str(staged)):
        checkpoint("exchanged")
        return
    if root.is_dir():
        os.rename(root, retired)
        checkpoint("old store renamed")
    os.rename(staged, root)
    checkpoint("new store renamed")


def _is_new(store: Path, doc: dict[str, Any]) -> bool:
    """Whether every array of the journal is in ``store`` with the journal's fingerprint, complete."""
    if not (store / "zarr.json").is_file():
        return False
    try:
        group = zarr.open_group(store=Path(store), mode="r", use_consolidated=False)
        states = [group[a].attrs.get("pipeline") for a in doc["arrays"]]
    except Exception:  # noqa: BLE001 - not there, or not readable: not the replacement
        return False
    return any(isinstance(s, dict) for s in states) and all(
        not isinstance(s, dict) or (s.get("fingerprint") == doc["fingerprint"] and s.get("complete") is True) for s in states
    )


def _group_attrs(store: Path) -> dict[str, Any]:
    """The old group's own attributes (carried to the replacement), without the staging marker."""
    try:
        attrs = dict(zarr.open_group(store=Path(store), mode="r", use_consolidated=False).attrs)
    except Exception:  # noqa: BLE001 - no old group: none
        attrs = {}
    attrs.pop(MARK, None)
    return attrs


def _arrays(store: Path) -> Iterable[str]:
    """The paths of the arrays in a store (folders whose ``zarr.json`` says array)."""
    for folder, dirs, files in os.walk(store):
        rel = os.path.relpath(folder, store)
        if rel != "." and "zarr.json" in files and _node_type(Path(folder)) == "array":
            dirs.clear()
            yield rel.replace(os.sep, "/")


def _node_type(folder: Path) -> Any:
    try:
        return json.loads((folder / "zarr.json").read_text()).get("node_type")
    except (OSError, ValueError, AttributeError):
        return None


def _carry(src: Path, dst: Path, replaced: set[str], rel: str = "") -> None:
    """Hard-link (else copy) into ``dst`` everything of ``src`` the replacement does not replace:
    the paths in ``replaced``, files ``dst`` already has (its group metadata), and the staged
    arrays an earlier version of the tool left inside the store (``<array>.pipeline-new``/``-old``
    carrying its ``pipeline`` attribute)."""
    for entry in os.scandir(src):
        name = rel + entry.name
        if name in replaced or _old_staging_leftover(Path(entry.path), name, replaced):
            continue
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False):
            target.mkdir(exist_ok=True)
            _carry(Path(entry.path), target, replaced, name + "/")
        elif not os.path.lexists(target):
            _link(entry, target)


def _old_staging_leftover(path: Path, name: str, replaced: set[str]) -> bool:
    base = name.removesuffix(STAGED).removesuffix(RETIRED)
    if base == name or base not in replaced or _node_type(path) != "array":
        return False
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return isinstance(json.loads((path / "zarr.json").read_text())["attributes"]["pipeline"]["fingerprint"], str)
    return False


def _link(entry: os.DirEntry[str], target: Path) -> None:
    if entry.is_symlink():
        os.symlink(os.readlink(entry.path), target)
        return
    try:
        os.link(entry.path, target, follow_symlinks=False)
    except OSError:
        shutil.copy2(entry.path, target, follow_symlinks=False)


def _exchange(a: str, b: str) -> bool:
    """Atomically exchange two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where the OS or
    the file system does not offer it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), a)
