"""What a batch runs over: its config paths (globs expanded) and its sets of template values
(``--var`` lists and ``--vars-from`` rows, combined as a matrix)."""

from __future__ import annotations

import csv
import glob
import itertools
import os
from collections.abc import Mapping, Sequence

from ._config_templates import is_variable_name, parse_assignment
from .errors import ConfigError


def expand_paths(patterns: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Config arguments, with glob patterns expanded (for callers without a shell, such as cron
    entries that quote them or workflow engines); a pattern matching nothing is kept as given so
    that its run fails with 'config file not found'."""
    out: list[str] = []
    for p in map(str, patterns):
        if any(ch in p for ch in "*?[") and not os.path.exists(p):
            matches = sorted(glob.glob(p))
            out.extend(matches or [p])
        else:
            out.append(p)
    return out


def variable_sets(
    assignments: Sequence[str] = (), vars_from: str | os.PathLike[str] | None = None
) -> list[dict[str, str]]:
    """The sets of template values a batch runs over.

    ``assignments`` are ``--var NAME=VALUE`` options; a comma-separated value is a list
    (``--var DATE=2026-11-20,2026-11-21``).  ``vars_from`` is a CSV file whose header row names
    the variables and whose every other row is one set (for values containing commas; rows whose
    first cell starts with ``#`` are comments).  Lists and rows combine as a matrix (every
    combination, in order).  A name given twice is an error, never a silent override.  No
    variables: one empty set."""
    axes: list[list[dict[str, str]]] = []
    seen: dict[str, str] = {}
    for text in assignments:
        name, value = parse_assignment(text, option="--var")
        if name in seen:
            raise ConfigError(f"{name} is given twice ({seen[name]!r} and {text!r}); give a list as --var {name}=a,b,c", where="--var")
        seen[name] = text
        axes.append([{name: v} for v in value.split(",")])
    if vars_from is not None:
        axes.append(_read_vars_file(vars_from, seen))
    return [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*axes)]


def _read_vars_file(path: str | os.PathLike[str], seen: Mapping[str, str]) -> list[dict[str, str]]:
    where = f"--vars-from {path}"
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    except FileNotFoundError:
        raise ConfigError("file not found", where=where) from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"cannot read it ({e.__class__.__name__}: {e})", where=where) from None
    if len(rows) < 2:
        raise ConfigError("expected a header row of variable names and at least one row of values", where=where)
    names = [c.strip() for c in rows[0]]
    for name in names:
        if not is_variable_name(name):
            raise ConfigError(f"bad variable name {name!r} in the header row", where=where)
        if name in seen:
            raise ConfigError(f"{name} is also given with --var", where=where)
    if len(set(names)) != len(names):
        raise ConfigError(f"a variable is named twice in the header row {names}", where=where)
    sets = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(names):
            raise ConfigError(f"row {line} has {len(row)} values for {len(names)} names", where=where)
        sets.append({n: v.strip() for n, v in zip(names, row)})
    return sets

