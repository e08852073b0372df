"""A config mapping validated into a :class:`~pipeline.config.load.Config`: pydantic's errors as
messages that speak config keys (``window.size: ...``, 'did you mean'), every problem listed;
then the URL policy and the paths resolved against the config's folder."""

from __future__ import annotations

import difflib
import os
import reprlib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from pipeline.config.paths import check_schemes, resolve_paths
from pipeline.config.schema import Config, InputSpec, TemplatesSpec
from pipeline.errors import ConfigError
from pipeline.expr.windowfuncs import uses_gaussian_window


def _dotted(loc: tuple[Any, ...]) -> str:
    parts = [str(x) for x in loc if not (isinstance(x, str) and (x in _UNION_TAGS or "[" in x))]
    return ".".join(parts) or "config"


# pydantic puts the union member tried into the location; drop those tags from dotted keys
_UNION_TAGS = {"int", "str", "float", "bool", "tuple[int, int]", "literal['auto']", "constrained-int", "constrained-str", "is-instance"}


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at ``loc`` (for 'did you mean' suggestions)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            if len(loc) > 2 and loc[0] == "inputs" and part == loc[1]:  # inputs.<name>.<key>
                model = InputSpec
                continue
            return []
        ann = field.annotation
        for option in (ann, *typing.get_args(ann)):  # also ``Model | None``
            if isinstance(option, type) and issubclass(option, BaseModel):
                model = option
    return list(model.model_fields)


_short_repr = reprlib.Repr()
_short_repr.maxlevel = 3
_short_repr.maxstring = 50
_short_repr.maxother = 50


def _format_error(err: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> tuple[str, str]:
    loc = prefix + tuple(err["loc"])
    where = _dotted(loc)
    if err["type"] == "extra_forbidden":
        key = str(loc[-1])
        choices = _valid_keys(Config, loc)
        close = difflib.get_close_matches(key, choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else (f" (valid keys: {', '.join(choices)})" if choices else "")
        return where, f"unknown key{hint}"
    if err["type"] == "missing":
        return where, "required key is missing"
    msg = err["msg"]
    if "input" in err and err["type"] not in ("missing",):
        got = err["input"]
        if isinstance(got, int) and not isinstance(got, bool) and got.bit_length() > 200:
            shown = f"an integer of {got.bit_length()} bits"  # repr of a 5,000-digit int raises
        else:
            shown = _short_repr.repr(got)  # bounded: a YAML alias bomb must not be expanded here
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg = f"{msg} (got {shown})"
    return where, msg


def parse_config(data: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None = None, source: str = "config") -> Config:
    """Validate a config mapping and resolve its relative paths against ``base_dir``.

    ``source`` (the file name) prefixes error messages.
    """
    if not isinstance(data, Mapping):
        raise ConfigError("the config must be a mapping", where=source)
    try:
        cfg = Config.model_validate(dict(data))
    except ValidationError as e:
        raise ConfigError.several([(f"{source}: {k}", m) for k, m in _problems(e).items()]) from None
    check_schemes(cfg, source)
    if cfg.window.size is None and cfg.window.weights is None and not uses_gaussian_window(cfg.op):
        raise ConfigError("required key is missing (or give window.weights)", where=f"{source}: window.size")
    return resolve_paths(cfg, Path(base_dir) if base_dir is not None else Path.cwd(), source)


def path_variables(data: Any, source: str = "config") -> frozenset[str]:
    """``templates.allow_paths`` of a raw config, validated (templates are expanded before the
    whole config is validated, and this says how)."""
    raw = data.get("templates") if isinstance(data, Mapping) else None
    if raw is None:
        return frozenset()
    try:
        spec = TemplatesSpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError.several([(f"{source}: {k}", m) for k, m in _problems(e, ("templates",)).items()]) from None
    return frozenset(spec.allow_paths)


def _problems(e: ValidationError, prefix: tuple[str, ...] = ()) -> dict[str, str]:
    """Dotted key -> message, one per key (``prefix``: where the validated part sits)."""
    problems: dict[str, str] = {}
    for err in e.errors():
        where, msg = _format_error(err, prefix)
        # a union (``size: 3`` or ``[3, 5]``) reports each member's failure: keep one per
        # key, the most specific (``window.size.0`` over ``window.size``)
        related = [k for k in problems if k == where or k.startswith(where + ".") or where.startswith(k + ".")]
        if any(len(k) >= len(where) for k in related):
            continue
        for k in related:
            del problems[k]
        problems[where] = msg
    return problems
