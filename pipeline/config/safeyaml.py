"""Reading YAML safely: no Python tags, no duplicate keys, ``${NAME}`` templates kept intact,
and a bound on what YAML aliases can expand to.

Every YAML text of a config goes through :data:`_StrictLoader`: the config file
(:func:`load_yaml`), ``--set`` values and template values (:func:`parse_value`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

#: What a document that is valid YAML but no config makes the loader raise (:func:`hostile`
#: says it in words).
HOSTILE_ERRORS = (RecursionError, TypeError, ValueError, OverflowError, MemoryError)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silently ignored key is a silent bug)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_value(text: str) -> Any:
    """A ``--set`` or template value as YAML (a scalar or a flow collection: ``5``, ``[5, 3]``)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file safely (no Python tags, no duplicate keys) into a mapping."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", where=str(p)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file ({e.__class__.__name__}: {e})", where=str(p)) from None
    text, restore = _protect_templates(text)
    try:
        data = restore(yaml.load(text, Loader=_StrictLoader))  # noqa: S506 - _StrictLoader is a SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        what = " ".join(" ".join(str(s).split()) for s in (e.context, e.problem) if s)
        raise ConfigError(f"invalid YAML: {what}", where=f"{p}{line}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {' '.join(str(e).split())}", where=str(p)) from None
    except HOSTILE_ERRORS as e:
        raise ConfigError(f"invalid YAML: {hostile(e)}", where=str(p)) from None
    if not isinstance(data, dict):
        raise ConfigError("the config must be a mapping of keys (inputs, op, window, output, ...)", where=str(p))
    check_expanded_size(data, where=str(p))
    return data

def _protect_templates(text: str) -> tuple[str, Any]:
    """``${NAME}`` templates replaced by plain-word placeholders before YAML parsing, so that
    ``{path: ../in/${DATE}/a.zarr}`` (a flow mapping, where ``{`` is special) parses like the quoted
    form; the returned function puts the templates back into the parsed strings (keys and values),
    where :func:`pipeline.config.load.expand_variables` substitutes them.  Placeholders never span a line, so YAML
    error lines are unchanged."""
    if "${" not in text:
        return text, lambda data: data
    prefix = "pipelinetemplate"
    while prefix in text:
        prefix += "x"
    found: list[str] = []

    def hide(m: re.Match[str]) -> str:
        found.append(m.group(0))  # ``$$`` too: ``$${X}`` must not leave a bare ``{`` behind
        return f"{prefix}{len(found) - 1}z"

    hidden = re.sub(r"\$\$(?:\{[^}\n]*\})?|\$\{[^}\n]*\}", hide, text)
    token = re.compile(re.escape(prefix) + r"(\d+)z")

    def restore(data: Any) -> Any:
        if isinstance(data, dict):
            return {restore(k): restore(v) for k, v in data.items()}
        if isinstance(data, list):
            return [restore(v) for v in data]
        if isinstance(data, str) and prefix in data:
            return token.sub(lambda m: found[int(m.group(1))], data)
        return data

    return hidden, restore


def hostile(e: BaseException) -> str:
    """What a YAML document that is valid YAML but no config (nested 20,000 deep, a list as a
    mapping key, a 5,000-digit number) did, in words."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if isinstance(e, TypeError):
        return "a mapping key must be a plain value (not a list or mapping)"
    if isinstance(e, MemoryError):
        return "too large"
    return "a number too large to read" if "digits" in str(e) or isinstance(e, OverflowError) else str(e).splitlines()[0][:100]


#: A config holds a few dozen values; YAML aliases can make a small file expand to billions.
MAX_VALUES = 100_000
#: A string counts as one value per this many characters (so at most ~10 MB of text expands).
CHARS_PER_VALUE = 100


def _expanded_size(data: Any) -> int:
    """How many values ``data`` holds once aliases are expanded, counted over the shared nodes
    (each counted once per id, so this is linear in the file's size)."""
    memo: dict[int, int] = {}

    def size(node: Any, depth: int = 0) -> int:
        if isinstance(node, str):  # long strings count too: `$$` text repeated by aliases
            return 1 + len(node) // CHARS_PER_VALUE
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key not in memo:
            if depth > 100:  # (a YAML alias cannot form a cycle in a safe load, but stay finite)
                return MAX_VALUES + 1
            children = node.values() if isinstance(node, dict) else node
            memo[key] = min(MAX_VALUES + 1, 1 + sum(size(c, depth + 1) for c in children))
        return memo[key]

    return size(data)


def check_expanded_size(data: Any, *, where: str) -> None:
    """Refuse a config that holds more than :data:`MAX_VALUES` values once aliases are expanded
    (before anything copies or expands it)."""
    if _expanded_size(data) > MAX_VALUES:
        raise ConfigError(f"the config expands to more than {MAX_VALUES} values (YAML aliases used as a bomb?)", where=where)
