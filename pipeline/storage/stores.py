"""Store paths: a local path or an fsspec URL (``s3://bucket/key.zarr``, ``gs://...``,
``file://...``) with optional ``storage_options``, and how a store is named in messages.

Format-neutral and free of the rest of the package, so that the input sources, the output
targets and :mod:`pipeline.storage.io` (which re-exports these names) can all build on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from pipeline.errors import InputError

T = TypeVar("T")


def location(path: str, array: str | None) -> str:
    """How an array is named in messages: ``store:array``."""
    return f"{path}:{array}" if array else path


def is_local(path: str) -> bool:
    """Whether a store path is on the local file system (a path or a ``file://`` URL)."""
    return "://" not in path or path.startswith("file://")


def local_path(path: str) -> str:
    """A local store path without its ``file://`` scheme."""
    return path[len("file://") :] if path.startswith("file://") else path


def protocol(path: str) -> str:
    """The fsspec protocol of a store path: ``file`` for local paths, else the URL's scheme."""
    return "file" if is_local(path) else path.split("://", 1)[0].lower()


def is_process_local(path: str) -> bool:
    """True for stores that live in one process's memory (``memory://``): other processes,
    such as the workers of a cluster, cannot see them."""
    return protocol(path) == "memory"


def store_args(path: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``zarr.open*`` keyword arguments for a store: a local path as a ``Path`` (zarr's LocalStore;
    as a string, zarr >= 3.4 would read a ``#`` in a folder name as the start of a URL fragment and
    write elsewhere), a URL through fsspec (zarr's FsspecStore) with its storage options."""
    if is_local(path):
        return {"store": Path(local_path(path))}
    if not storage_options:  # zarr >= 3.4 refuses storage_options (even empty) for memory:// URLs
        return {"store": path}
    return {"store": path, "storage_options": dict(storage_options)}


def remote_exists(path: str, storage_options: Mapping[str, Any] | None, where: str) -> bool:
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
        return fs.exists(root)
    except ImportError as e:  # e.g. gs:// without gcsfs
        raise InputError(f"cannot open {path}: {e}", where=where) from None
    except Exception as e:  # noqa: BLE001 - credentials, endpoint, permissions: all reported
        raise InputError(f"cannot open {path}: {e.__class__.__name__}: {e}", where=where) from None


class Registry(Generic[T]):
    """Openers of one kind (input sources, output targets) by store path: registered by file
    suffix (``.tif``) or URL scheme (``s3://``), matched case-insensitively; the first match
    wins, else the fallback (Zarr).  :mod:`pipeline.storage.sources` and :mod:`pipeline.storage.targets` each
    hold one and expose its :meth:`register` and :meth:`opener_for`."""

    def __init__(self, fallback: Callable[[], T]) -> None:
        self.entries: list[tuple[str, T]] = []  #: (suffix or "scheme://", opener), in registration order
        self.fallback = fallback  #: returns the default opener (imported on first use)

    def register(self, match: str, opener: T) -> None:
        """Open paths ending in ``match`` (``.tif``) or starting with it (``scheme://``) with ``opener``."""
        self.entries.append((match, opener))

    def opener_for(self, path: str) -> T:
        """The opener for a store path: the first registered match, else the fallback."""
        bare = path.rstrip("/").lower()
        for match, opener in self.entries:
            if bare.endswith(match) or bare.startswith(match):
                return opener
        return self.fallback()

def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (unknown objects as their ``str``), keys sorted: for
    fingerprints and identities."""
    import json

    return json.loads(json.dumps(value, default=str, sort_keys=True))
