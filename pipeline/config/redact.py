"""Credentials are never persisted: the config as the outputs' provenance records it.

``storage_options`` (of each input and of the output) go to fsspec and may hold credentials
(``key``, ``secret``, ``token``, ``password``, ``session_token``, ``client_kwargs.aws_secret_access_key``,
a service-account document, ...).  The rule is an allow-list, applied at every level of nesting:
an option is recorded only when its name is in :data:`KEPT` (options known to hold no secret:
endpoints, regions, anonymous access, timeouts, caching) and its value is a number, a boolean,
``null``, a string, or a mapping checked by the same rule; any other option, and any list, is
recorded as :data:`REDACTED` (its name stays, so the provenance shows it was set).  Every URL kept
(an ``endpoint_url``, an input or output path, a ready marker, a scheduler address) loses its
userinfo (``user:password@``) and its query string (pre-signed URLs carry their signature there),
which is replaced by :data:`REDACTED`.

The resume fingerprint holds no storage options at all (:func:`pipeline.runner.resume.fingerprint_config`):
they do not change the output values, so rotating a key never invalidates an output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "<redacted>"

#: storage option names (at any level of nesting) known to hold no credential
KEPT = frozenset({
    "anon", "endpoint_url", "region_name", "region", "requester_pays", "use_ssl", "verify", "profile", "project",
    "version_aware", "default_block_size", "default_cache_type", "default_fill_cache", "cache_regions", "block_size",
    "cache_type", "client_kwargs", "config_kwargs", "s3", "addressing_style", "signature_version", "retries",
    "max_attempts", "mode", "timeout", "connect_timeout", "read_timeout", "max_pool_connections", "use_listings_cache",
    "listings_expiry_time", "skip_instance_cache", "account_name", "consistency", "access", "requests_timeout",
})


def url(value: str) -> str:
    """``value`` without the userinfo and the query string of a URL (other strings unchanged)."""
    if "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # not a URL after all (an odd port, brackets): nothing of it is kept
        return REDACTED
    netloc = host + (f":{port}" if port is not None else "")
    if parts.username is None and parts.password is None and not parts.query:
        return value
    return urlunsplit((parts.scheme, netloc, parts.path, REDACTED if parts.query else "", parts.fragment))


def options(opts: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``storage_options`` as they may be recorded (the rule in the module docstring)."""
    if opts is None:
        return None
    return {str(k): _value(v) if str(k).lower() in KEPT else REDACTED for k, v in opts.items()}


def _value(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float):
        return v
    if isinstance(v, str):
        return url(v)
    if isinstance(v, Mapping):
        return options(v)
    return REDACTED


def config(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A config dump (``Config.model_dump(mode="json")``) with its storage options and URLs
    redacted (a new document; ``doc`` is not changed)."""
    out = dict(doc)
    out["inputs"] = {name: _store(spec) for name, spec in doc.get("inputs", {}).items()}
    if "output" in doc:
        out["output"] = _store(doc["output"])
    compute = doc.get("compute")
    if isinstance(compute, Mapping) and isinstance(compute.get("scheduler"), str):
        out["compute"] = {**compute, "scheduler": url(compute["scheduler"])}
    return out


def _store(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One input's or the output's section, redacted."""
    out = dict(spec)
    for key in ("path", "ready_marker"):
        if isinstance(out.get(key), str):
            out[key] = url(out[key])
    if out.get("storage_options") is not None:
        out["storage_options"] = options(out["storage_options"])
    return out
