"""Every module, class, function, logger and CLI command the docs name in backticks exists.

README.md, ARCHITECTURE.md and docs/ (if present) are read; inline code spans (fenced blocks
aside) are checked when they look like a name of this package:

- ``pipeline <command>`` (``pipeline run/validate ...`` names two): a command of the CLI;
- ``name.py`` or a path ending in ``.py``: a module of the package, or a file of the repository;
- a dotted name (``pipeline.storage.zarrchunks``, ``zarrchunks.DirectChunks``, ``engine.prime``, a call
  such as ``runner.run(cfg, ...)``) whose first part is ``pipeline`` or one of its modules
  (loggers are named after their modules): resolved by import and ``getattr``.  Dotted names
  that start elsewhere (``np.pad``) are not ours;
- a config key (``compute.workers``, ``inputs.<name>.nodata``; ``window.size`` too, whose section
  shares a module's name): a field of the config's schema.

The full-grid summary in the README is also checked against the code that writes it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import pkgutil
import re
import typing
from pathlib import Path

import typer.main
from pydantic import BaseModel

from pipeline.bench import kernelgrid
from pipeline.cli.main import app
from pipeline.config.schema import Config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: dotted tokens that are files, not Python names (``pipeline.timer``, ``out.zarr``)
FILE_SUFFIXES = {"service", "timer", "yaml", "yml", "json", "zarr", "sh", "md", "crontab", "prom", "txt", "toml", "tif", "log"}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def spans(text: str) -> list[str]:
    """The inline code spans of a Markdown text, fenced code blocks left out."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", text)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _all_modules() -> list[str]:
    import pipeline

    return ["pipeline", *(m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline."))]


MODULES = _all_modules()


def _named(head: str) -> list[str]:
    """The modules and sub-packages whose own name is ``head`` (``io``: ``pipeline.storage.io``): the
    docs name modules by their short names."""
    return [m for m in MODULES if m.rsplit(".", 1)[-1] == head]


def _external(dotted: str) -> bool:
    """Whether ``dotted`` is a name of another importable package (``zarr.open_group``: not our
    ``zarr`` modules), judged by resolving it there."""
    head, _, rest = dotted.partition(".")
    if head == "pipeline" or not _is_module(head):
        return False
    try:
        obj = importlib.import_module(head)
    except ImportError:
        return False
    for attr in rest.split(".") if rest else []:
        if _is_module(f"{obj.__name__}.{attr}") if hasattr(obj, "__name__") else False:
            obj = importlib.import_module(f"{obj.__name__}.{attr}")
        elif hasattr(obj, attr):
            obj = getattr(obj, attr)
        else:
            return False
    return True


def _resolve(dotted: str) -> bool:
    """Whether ``dotted`` (``pipeline.`` implied, or a module's short name first) is a module or an
    attribute reachable from one."""
    head, _, rest = dotted.partition(".")
    for module in _named(head):
        if _resolve_from(module.split(".", 1)[1] + ("." + rest if rest else "")):
            return True
    return _resolve_from(dotted)


def _resolve_from(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), -1, -1):  # the longest importable module prefix (at least the package)
        module = ".".join(["pipeline", *parts[:i]])
        if _is_module(module):
            obj = importlib.import_module(module)
            break
    for attr in parts[i:]:
        if not hasattr(obj, attr):
            return False
        obj = getattr(obj, attr)
    return True


def _commands() -> set[str]:
    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def classify(span: str) -> tuple[str, str] | None:
    """(kind, name) of a span that names something of ours, or None."""
    span = span.strip()
    m = re.match(r"pipeline ([a-z][a-z/-]*)", span)
    if m:
        return "command", m.group(1)
    first = span.split()[0] if span.split() else ""
    if first.endswith(".py") and re.fullmatch(r"[\w./-]+\.py", first):
        return "file", first
    m = NAME.match(first)
    if not m or m.group(0).rsplit(".", 1)[-1] in FILE_SUFFIXES:
        return None
    rest = first[m.end():]
    if rest and not rest.startswith("("):  # a path, a key with a value: not a Python name
        return None
    dotted = m.group(0)
    head = dotted.split(".")[0]
    if head == "pipeline":
        return "name", dotted.split(".", 1)[1]
    if head in Config.model_fields and _is_config_key(dotted):  # window.size: a key, not the module
        return "key", dotted
    if _is_module(f"pipeline.{head}") or (_named(head) and not _external(dotted)):
        return "name", dotted
    if head in Config.model_fields:
        return "key", dotted
    return None


def _is_config_key(dotted: str) -> bool:
    """``window.size``: a key of the config (the modules ``window`` and ``output`` share names with
    its sections)."""
    model: type[BaseModel] | None = Config
    parts = dotted.split(".")
    while parts:
        part = parts.pop(0)
        if model is None or part not in model.model_fields:
            return False
        ann = model.model_fields[part].annotation
        if typing.get_origin(ann) is dict and parts:  # inputs.<name>.nodata
            parts.pop(0)
            ann = typing.get_args(ann)[1]
        model = next((t for t in (ann, *typing.get_args(ann)) if isinstance(t, type) and issubclass(t, BaseModel)), None)
    return True


def _exists(kind: str, name: str, commands: set[str]) -> bool:
    if kind == "command":
        return all(c in commands for c in name.split("/"))
    if kind == "file":
        stem = name[: -len(".py")]
        in_package = any(p.as_posix().endswith("/" + name) for p in (ROOT / "pipeline").rglob("*.py"))
        return (ROOT / name).is_file() or in_package or _is_module("pipeline." + stem.replace("/", "."))
    if kind == "key":
        return _is_config_key(name)
    return _resolve(name) or _is_config_key(name)


def test_every_name_in_the_docs_exists():
    commands = _commands()
    checked: set[tuple[str, str]] = set()
    missing = []
    for doc in DOCS:
        for span in spans(doc.read_text()):
            found = classify(span)
            if found is None or found in checked:
                continue
            checked.add(found)
            if not _exists(*found, commands):
                missing.append(f"{doc.name}: `{span}` ({found[0]} {found[1]})")
    assert not missing, "names in the docs that do not exist:\n" + "\n".join(missing)
    kinds = {k: sum(1 for kind, _ in checked if kind == k) for k in ("command", "file", "name", "key")}
    # the docs name the CLI's commands, most modules and many functions: a parser that finds far
    # fewer has stopped checking
    assert kinds["command"] >= 5 and kinds["file"] >= 60 and kinds["name"] >= 15 and kinds["key"] >= 8, kinds


def test_the_checker_tells_names_that_do_not_exist():
    commands = _commands()
    for span in ("io.DirectChunks", "pipeline.storage.io.DirectChunks", "pipeline inspect", "pipeline batch", "nosuchmodule.py",
                 "zarrchunks.NoSuchClass", "runner.run_all(cfg)", "window.no_such_key", "compute.no_such_key"):
        found = classify(span)
        assert found is not None and not _exists(*found, commands), span
    for span in ("zarrchunks.DirectChunks", "pipeline.storage.zarrchunks", "pipeline info", "pipeline run/validate --scheduler ...",
                 "moments.py", "fastwin.index_map", "runconfig.run(cfg, session=...)", "pipeline.window_reduce", "window.size", "output.fill_value",
                 "compute.cluster.kind", "inputs.a.nodata"):
        found = classify(span)
        assert found is not None and _exists(*found, commands), span
    for span in ("np.pad", "zarr.open_group", "zarr.abc.codec.SupportsSyncCodec", "pipeline.timer", "out.zarr.pipeline/lock", "da.pipeline", "exc.pipeline_result"):
        assert classify(span) is None, span


def test_full_grid_summary_in_the_readme_is_its_json_summarised():
    """The README's whole-grid table is what the code writes from benchmarks/kernel-grid-4096-full.json,
    separator row included, with true medians (42 cells: the mean of the middle two)."""
    cells = json.loads((ROOT / "benchmarks" / "kernel-grid-4096-full.json").read_text())["cells"]
    lines = kernelgrid.grid_summary(cells)
    readme = (ROOT / "docs" / "performance.md").read_text()
    assert "\n".join(lines) + "\n" in readme
    assert lines[1] == "|---|---|---|---|---|---|"
    sel = sorted(c["vs_int_sum"] for c in cells if (c["reduce"], c["dtype"]) == ("count", "uint8"))
    assert len(sel) % 2 == 0
    median = (sel[len(sel) // 2 - 1] + sel[len(sel) // 2]) / 2
    assert f"| count | uint8 | {len(sel)} | {median:.2f} |" in readme
