"""Changing a config before validation: ``--set key=value`` overrides, ``${NAME}`` templates
(``--var``, the environment) and ``--scheduler``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any

import yaml

from pipeline.config.safeyaml import HOSTILE_ERRORS, hostile, parse_value
from pipeline.config.schema import VARIABLE_NAME, check_scheduler
from pipeline.errors import ConfigError

_VAR = re.compile(r"\$\$|\$\{([^}]*)\}")
_NAME = re.compile(VARIABLE_NAME)


def is_variable_name(name: str) -> bool:
    """Whether ``name`` may name a template variable (``${NAME}``, ``--var``, ``--vars-from``)."""
    return bool(_NAME.match(name))


def parse_assignment(text: str, *, option: str) -> tuple[str, str]:
    """Split ``KEY=VALUE`` (as given to ``--set`` or ``--var``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"expected KEY=VALUE, got {text!r}", where=option)
    return key, value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str], *, source: str = "config") -> dict[str, Any]:
    """Apply ``--set dotted.key=value`` overrides to a raw config mapping.

    Values are parsed as YAML scalars or flow collections (``5``, ``true``, ``[5, 3]``, ``abc``);
    intermediate mappings are created as needed.  Unknown keys are caught by validation later,
    with the same 'did you mean' suggestions as keys written in the file."""
    out: dict[str, Any] = _deep_copy(data)
    for text in overrides:
        dotted, raw = parse_assignment(text, option="--set")
        parts = dotted.split(".")
        if any(not p for p in parts):
            raise ConfigError(f"bad key {dotted!r} (use dotted keys such as window.size)", where="--set")
        try:
            value = parse_value(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"cannot parse the value of {dotted}: {str(e).splitlines()[0]}", where="--set") from None
        except HOSTILE_ERRORS as e:
            raise ConfigError(f"cannot parse the value of {dotted}: {hostile(e)}", where="--set") from None
        node: dict[str, Any] = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[: i + 1])} is not a mapping, cannot set {dotted}", where="--set")
            node = child
        node[parts[-1]] = value
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def expand_variables(
    data: Any, variables: Mapping[str, str], *, source: str = "config", confine: Set[str] = frozenset(), _loc: tuple[str, ...] = ()
) -> Any:
    """Replace ``${NAME}`` in every string value by ``variables[NAME]`` (``$$`` is a literal ``$``).

    A value that is exactly ``${NAME}`` takes the variable parsed as a YAML scalar, so
    ``size: ${W}`` gives an int; inside a longer string the text is substituted.  An undefined
    variable is an error naming it and the key.  The values of the variables in ``confine``
    must stay inside one component of a path key (see :func:`_expand_path`)."""
    if isinstance(data, Mapping):
        return {k: expand_variables(v, variables, source=source, confine=confine, _loc=(*_loc, str(k))) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_variables(v, variables, source=source, confine=confine, _loc=(*_loc, str(i))) for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    where = f"{source}: {'.'.join(_loc) or 'config'}"

    def lookup(name: str) -> str:
        if not is_variable_name(name):
            raise ConfigError(f"bad variable name ${{{name}}}", where=where)
        if name not in variables:
            raise ConfigError(f"undefined variable ${{{name}}} (set it in the environment or with --var {name}=...)", where=where)
        return variables[name]

    if confine and _is_path_key(_loc) and any(m.group(1) in confine for m in _VAR.finditer(data)):
        return _expand_path(data, lookup, confine, where)
    whole = _VAR.fullmatch(data)
    if whole and whole.group(0) != "$$":
        value = lookup(whole.group(1))
        try:
            parsed = parse_value(value) if value.strip() else value
        except (yaml.YAMLError, RecursionError, TypeError, ValueError, OverflowError):
            return value
        return parsed if isinstance(parsed, (str, int, float, bool)) else value
    return _substitute(data, lookup)


def _substitute(text: str, lookup: Callable[[str], str]) -> str:
    return _VAR.sub(lambda m: "$" if m.group(0) == "$$" else lookup(m.group(1)), text)


def _is_path_key(loc: tuple[str, ...]) -> bool:
    """Whether a dotted key holds a file path: ``inputs.*.path``, ``inputs.*.ready_marker``,
    ``output.path``, ``compute.security.*`` (the keys resolved as paths)."""
    if len(loc) == 3 and loc[0] == "inputs":
        return loc[2] in ("path", "ready_marker")
    return loc == ("output", "path") or (len(loc) == 3 and loc[:2] == ("compute", "security") and loc[2] in ("ca_file", "cert", "key"))


_ALLOW_HINT = "list {name} in templates.allow_paths to allow whole paths"


def _expand_path(text: str, lookup: Callable[[str], str], confine: Set[str], where: str) -> str:
    """A path key's value, expanded component by component: a value of a variable in ``confine``
    must hold no ``/`` or ``\\`` and not start with ``~``, and a component it is part of must not
    become ``.``, ``..`` or empty (``${A}${B}`` with ``A=.``, ``B=.`` is ``..``)."""
    out = []
    for part in text.split("/"):
        names = [m.group(1) for m in _VAR.finditer(part) if m.group(0) != "$$" and m.group(1) in confine]
        for name in names:
            value = lookup(name)
            if "/" in value or "\\" in value or value.startswith("~"):
                raise ConfigError(
                    f"the value {value!r} of ${{{name}}} is not a single path component ('/', '\\' or a leading '~'); "
                    + _ALLOW_HINT.format(name=name),
                    where=where,
                )
        expanded = _substitute(part, lookup)
        if names and expanded in ("", ".", ".."):
            raise ConfigError(f"${{{names[0]}}} makes the path component {expanded!r}; " + _ALLOW_HINT.format(name=names[0]), where=where)
        out.append(expanded)
    return "/".join(out)


def _checked_scheduler(scheduler: str, where: str) -> str:
    try:
        return check_scheduler(scheduler)
    except ValueError as e:
        raise ConfigError(f"{e} (got {scheduler!r})", where=where) from None


def scheduler_overrides(scheduler: str | None, *, where: str = "--scheduler") -> list[str]:
    """``--set`` overrides for the CLI's ``--scheduler`` (which also replaces a ``compute.cluster``)."""
    if scheduler is None:
        return []
    _checked_scheduler(scheduler, where)
    return [f"compute.scheduler={scheduler}", "compute.cluster=null"]
