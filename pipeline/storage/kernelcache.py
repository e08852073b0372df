"""The compiled-kernel cache on disk: the folder (``$PIPELINE_CACHE_DIR``, else
``$XDG_CACHE_HOME/pipeline`` or ``~/.cache/pipeline``), the checks that make it safe to load
code from (numba's cache holds pickles it loads and runs), and the generated sources written
into it.  The kernels (:mod:`pipeline.kernels.compiled`, :mod:`pipeline.kernels.jit`) ask here;
they never touch the disk themselves."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

from pipeline.storage import safety


def cache_dir() -> Path:
    base = os.environ.get("PIPELINE_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pipeline"


_warned: set[str] = set()


def private_folder() -> Path | None:
    """The kernel cache folder, made private (mode 0700) to this user, or None when it cannot be
    trusted: not ours, a symlink, or writable by others (anyone able to plant a file there could
    run code in our process through numba's pickled cache), or below a folder that another user
    could swap (see :func:`pipeline.storage.safety.untrusted_folder`; a warning says which, once).  A
    folder that is ours and only readable by others is tightened to 0700."""
    folder = cache_dir() / "kernels"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in (folder, folder / "__pycache__"):
            try:
                st = os.lstat(d)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
                return None
            if st.st_mode & 0o077:
                os.chmod(d, 0o700)
    except OSError:
        return None
    why = safety.untrusted_folder(folder)
    if why is not None:
        if why not in _warned:
            _warned.add(why)
            warnings.warn(f"the kernel cache {folder} is not used (compiled in memory): {why}", UserWarning, stacklevel=2)
        return None
    return folder


def source_file(name: str, text: str) -> Path | None:
    """``text`` as the file ``name`` of the private kernel folder (rewritten atomically when it
    differs), or None where there is no trusted writable folder: the caller compiles in memory."""
    folder = private_folder()
    if folder is None:
        return None
    path = folder / name
    try:
        if path.is_symlink() or not path.is_file() or path.read_text() != text:
            safety.atomic_write(path, text.encode())
    except OSError:
        return None
    return path


def untrusted(folder: str | os.PathLike[str]) -> str | None:
    """Why numba's own cache folder ``folder`` must not be used (another user could swap it or
    a folder above it), or None: :func:`pipeline.storage.safety.untrusted_folder`."""
    return safety.untrusted_folder(folder)
