"""Path safety for everything the tool deletes, replaces or writes on a local filesystem.

The rule: the tool deletes or replaces only what it created itself, inside the output it was asked
to write, after resolving every path (symlinks included) and checking it against every input.
Names read from an output's metadata (the ``pipeline`` attribute) are input, never paths to trust:
they are checked with :func:`check_name` and :func:`check_fingerprint` before use.

Every check raises :class:`~pipeline.errors.OutputError` with a one-line message naming the path.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from pipeline.errors import OutputError

_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_name(name: object, what: str) -> str:
    """An array path inside a store (``name`` or ``group/name``): no ``..``/``.``/empty parts, no
    absolute path, backslash or control character.  Refused otherwise (metadata is input)."""
    if not isinstance(name, str) or not name or len(name) > 1000:
        raise OutputError(f"invalid array name {name!r} in {what}", where=what)
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in name or any(ord(c) < 32 for c in name):
        raise OutputError(f"invalid array name {name!r} in {what}: not a path inside the store", where=what)
    return name


def check_fingerprint(fp: object, what: str) -> str:
    """A fingerprint as the tool writes it: 64 lowercase hex digits."""
    if not isinstance(fp, str) or not _HEX64.fullmatch(fp):
        raise OutputError(f"invalid fingerprint {str(fp)[:80]!r} in {what}", where=what)
    return fp


def overlaps(a: Path, b: Path) -> bool:
    """Whether two resolved paths are equal or one contains the other."""
    return a == b or a in b.parents or b in a.parents


def symlink_on_path(root: Path, rel: str | os.PathLike[str]) -> Path | None:
    """The first symlink among ``root/rel`` and its parents below ``root`` (root itself may be a
    symlink: that is the store's own path, resolved and checked against the inputs)."""
    p = root
    for part in Path(rel).parts:
        p = p / part
        if p.is_symlink():
            return p
    return None


def check_no_symlink(root: Path, rel: str | os.PathLike[str], what: str) -> None:
    link = symlink_on_path(root, rel)
    if link is not None:
        raise OutputError(f"{link} is a symlink; refusing to write or delete through it", where=what)


def check_sidecar(sidecar: Path, names: Iterable[str], inputs: Mapping[str, str], what: str = "output.path") -> None:
    """The sidecar folder (lock, ledgers) and its per-array ledger folders are no symlinks and
    overlap no input store (``inputs``: local paths)."""
    if sidecar.is_symlink():
        raise OutputError(f"{sidecar} (the output's ledger folder) is a symlink; remove it", where=what)
    for name in names:
        check_no_symlink(sidecar, name, what)
    side = sidecar.resolve()
    for key, path in inputs.items():
        src = Path(path).resolve()
        if overlaps(side, src):
            raise OutputError(
                f"the output's ledger folder {sidecar} overlaps input store {path} ({key}); choose another output path",
                where=what,
            )


def check_tree(store: Path, arrays: Iterable[str], what: str = "output.path") -> None:
    """No symlink inside the output store where the tool writes: the group's own files and the
    folders of ``arrays`` (each array's folder and everything in it, chunks included).  A planted
    ``out.zarr/r/c/0 -> ../../in.zarr/a/c/0`` would send the writes into an input."""
    if not store.is_dir():
        return
    for entry in os.scandir(store):
        if entry.is_file(follow_symlinks=False):
            continue
        if entry.is_symlink() and not entry.is_dir():
            raise OutputError(f"{Path(entry.path)} is a symlink inside the output store; refusing to write", where=what)
    for name in arrays:
        check_no_symlink(store, name, what)
        top = store / name
        if not top.is_dir():
            continue
        _no_links_below(str(top), what)


def _no_links_below(folder: str, what: str) -> None:
    """Refuse any symlink below ``folder`` (``scandir``'s entry types: no extra ``stat`` per chunk)."""
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_symlink():
                    raise OutputError(f"{entry.path} is a symlink inside the output store; refusing to write through it", where=what)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)


def current_umask() -> int:
    """The process's umask, read from ``/proc/self/status`` where there is one (setting it to read
    it back would briefly change it for every thread), else by setting it and restoring it."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``path`` atomically: a new temp file in the same folder (``tempfile.mkstemp``:
    ``O_CREAT | O_EXCL``, so a planted symlink is never followed), then ``os.replace`` (which
    replaces a symlink at ``path`` itself, not what it points to).  The file gets the mode a
    plain ``open`` would give it (0666 less the umask), not mkstemp's 0600, so that readers such
    as node_exporter under another user can read it.  Raises OSError."""
    import tempfile

    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_batch_file(path: str | os.PathLike[str], protected: Mapping[str, str], what: str) -> None:
    """Before any run, for a file a batch writes (``--report``, ``--metrics``): its folder is
    writable, and it is none of ``protected`` (label -> local path: the configs, their inputs and
    outputs, the other batch files), nor inside one of them."""
    p = Path(path)
    name = f"the {what.lstrip('-')} {path}"  # the report ..., the metrics ...
    target = p.resolve()
    for label, other in protected.items():
        q = Path(other).resolve()
        if target == q or q in target.parents:
            raise OutputError(f"{name} would overwrite {label} ({other}); choose another path", where=what)
    if p.is_dir():
        raise OutputError(f"{name} is a folder", where=what)
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the file's folders are created when it is written
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {name}: folder {folder} is not writable", where=what)


def untrusted_folder(folder: str | os.PathLike[str]) -> str | None:
    """Why another user could swap ``folder`` or a folder above it (None: nobody can), the rule
    ssh applies to ``authorized_keys``, up to the root: every folder on the way, as written
    (symlinks included) and as resolved, is owned by this user or root and writable by no one
    else, unless it has the sticky bit (like ``/tmp``: others may add entries there but not
    rename or delete ours; each entry below it is then checked for its owner)."""
    written = Path(os.path.abspath(folder))
    real = Path(os.path.realpath(folder))
    for chain, follow in ((written, False), (real, True)):
        for d in (chain, *chain.parents):
            try:
                st = os.stat(d) if follow else os.lstat(d)
            except OSError as e:
                return f"{d}: {e.strerror or e}"
            if st.st_uid not in (0, os.getuid()):
                return f"{d} is owned by another user (uid {st.st_uid})"
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                return f"{d} is writable by {'others' if st.st_mode & 0o002 else 'its group'} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None
