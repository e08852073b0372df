"""What a batch runs over: its config paths (globs expanded) and its sets of template values
(``--var`` lists and ``--vars-from`` rows, combined as a matrix)."""

from __future__ import annotations

import csv
import glob
import itertools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence

from pipeline.config.templates import is_variable_name, parse_assignment
from pipeline.errors import ConfigError


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
    (``--var DATE=2026-11-20,2026-11-21``).  ``vars_from`` is a CSV file (see
    :func:`_read_vars_file`).  Lists and rows combine as a matrix (every combination, in order).
    A name given twice is an error, never a silent override; so is an empty value (``--var
    D=a,``).  No variables: one empty set."""
    axes: list[list[dict[str, str]]] = []
    seen: dict[str, str] = {}
    for text in assignments:
        name, value = parse_assignment(text, option="--var")
        if name in seen:
            raise ConfigError(f"{name} is given twice ({seen[name]!r} and {text!r}); give a list as --var {name}=a,b,c", where="--var")
        seen[name] = text
        values = value.split(",")
        if not all(values):
            raise ConfigError(f"{name} has an empty value in {text!r} (a value is required; no trailing comma)", where="--var")
        axes.append([{name: v} for v in values])
    if vars_from is not None:
        axes.append(_read_vars_file(vars_from, seen))
    return [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*axes)]


def _csv_rows(f: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """The rows of a CSV file with their line numbers; a line whose first character is ``#``,
    where a row starts, is a comment (a first value that starts with ``#`` is quoted: ``"#1"``);
    blank rows are skipped."""
    state = {"line": 0, "start": 0, "at_row": True}

    def lines() -> Iterator[str]:
        for line in f:
            state["line"] += 1
            if state["at_row"] and line.startswith("#"):
                continue
            if state["at_row"]:
                state["start"], state["at_row"] = state["line"], False
            yield line

    reader = csv.reader(lines())
    for row in reader:
        if row and any(c.strip() for c in row):
            yield state["start"], row
        state["at_row"] = True


def _read_vars_file(path: str | os.PathLike[str], seen: Mapping[str, str]) -> list[dict[str, str]]:
    """``--vars-from``: a header row of variable names, then one row of values per set (values
    trimmed, none empty).  UTF-8, with or without a byte-order mark (spreadsheets' "CSV UTF-8");
    lines starting with ``#`` are comments."""
    where = f"--vars-from {path}"
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(_csv_rows(f))
    except FileNotFoundError:
        raise ConfigError("file not found", where=where) from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"cannot read it ({e.__class__.__name__}: {e})", where=where) from None
    if len(rows) < 2:
        raise ConfigError("expected a header row of variable names and at least one row of values", where=where)
    names = [c.strip() for c in rows[0][1]]
    for name in names:
        if not is_variable_name(name):
            raise ConfigError(f"bad variable name {name!r} in the header row", where=where)
        if name in seen:
            raise ConfigError(f"{name} is also given with --var", where=where)
    if len(set(names)) != len(names):
        raise ConfigError(f"a variable is named twice in the header row {names}", where=where)
    sets = []
    for line, row in rows[1:]:
        if len(row) != len(names):
            raise ConfigError(f"line {line} has {len(row)} values for {len(names)} names", where=where)
        values = {n: v.strip() for n, v in zip(names, row)}
        empty = [n for n, v in values.items() if not v]
        if empty:
            raise ConfigError(f"line {line} has an empty value for {empty[0]} (a value is required)", where=where)
        sets.append(values)
    return sets
