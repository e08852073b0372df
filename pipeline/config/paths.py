"""Store paths in a config: the URL policy (which schemes, which are read-only) and relative
paths resolved against the config file's folder (so a config works from any working directory;
cron starts jobs in ``$HOME``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline.config.schema import Config, check_path_length
from pipeline.errors import ConfigError

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
#: a scheme prefix (two letters or more, so that a Windows drive ``C:`` is not one)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+):")

#: URL schemes accepted in ``inputs.*.path`` and ``output.path`` (fsspec protocols); anything
#: else with a scheme (``ftp://``, ``javascript:``, ``data:``) is refused.
ALLOWED_SCHEMES = frozenset({"file", "memory", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "http", "https"})
#: ... of which these are read-only (refused for ``output.path``).
READ_ONLY_SCHEMES = frozenset({"http", "https"})


def _is_url(path: str) -> bool:
    return bool(_URL.match(path))


def _resolve(path: str, base: Path, key: str) -> str:
    """``path`` against ``base`` (URLs as they are), held to the path limits once resolved (an
    absolute path and the same path written relatively are accepted alike)."""
    if path.startswith("file://") and not path[len("file://") :].startswith("/"):
        return "file://" + _resolve(path[len("file://") :], base, key)  # relative: against the config's folder
    if _is_url(path):
        return path
    p = Path(os.path.expanduser(path))
    if not p.is_absolute():
        p = base / p
    resolved = os.path.normpath(str(p))
    try:
        return check_path_length(resolved)
    except ValueError as e:
        raise ConfigError(f"{e} once resolved ({resolved[:60]}...)", where=key) from None


def resolve_paths(cfg: Config, base: Path, source: str = "config") -> Config:
    """``cfg`` with every file path (inputs, ready markers, the output, TLS files) resolved
    against ``base``; URLs are kept as they are."""
    inputs = {
        k: v.model_copy(
            update={
                "path": _resolve(v.path, base, f"{source}: inputs.{k}.path"),
                "ready_marker": None if v.ready_marker is None else _resolve(v.ready_marker, base, f"{source}: inputs.{k}.ready_marker"),
            }
        )
        for k, v in cfg.inputs.items()
    }
    output = cfg.output.model_copy(update={"path": _resolve(cfg.output.path, base, f"{source}: output.path")})
    compute = cfg.compute
    if compute.security is not None:
        sec = compute.security
        files = {
            k: _resolve(getattr(sec, k), base, f"{source}: compute.security.{k}") for k in ("ca_file", "cert", "key") if getattr(sec, k) is not None
        }
        compute = compute.model_copy(update={"security": sec.model_copy(update=files)})
    return cfg.model_copy(update={"inputs": inputs, "output": output, "compute": compute})


def check_schemes(cfg: Config, source: str) -> None:
    """The URL policy: local paths, ``file://`` and the fsspec schemes in :data:`ALLOWED_SCHEMES`;
    ``http(s)`` only for inputs."""
    paths = [(f"inputs.{k}.path", v.path, False) for k, v in cfg.inputs.items()] + [("output.path", cfg.output.path, True)]
    for key, path, is_output in paths:
        check_url(path, f"{source}: {key}", output=is_output)


def check_url(path: str, where: str, *, output: bool = False) -> None:
    """The URL policy for one store path (configs, ``pipeline info`` and ``verify`` alike)."""
    m = _SCHEME.match(path)
    if m is None:
        return
    scheme = m.group(1).lower()
    if scheme not in ALLOWED_SCHEMES:
        raise ConfigError(
            f"URL scheme {scheme!r} is not allowed (allowed: local paths, {', '.join(s + '://' for s in sorted(ALLOWED_SCHEMES))})",
            where=where,
        )
    if not path[m.end() :].startswith("//"):
        raise ConfigError(f"malformed URL {path!r} (expected {scheme}://...)", where=where)
    if output and scheme in READ_ONLY_SCHEMES:
        raise ConfigError(f"{scheme}:// is read-only; the output must be a local path or a writable store", where=where)
