"""The package's shape, checked from its source: sub-packages along the data path, imports that
run one way (each sub-package's ``__init__`` docstring says what it may import, in a line
``May import: ...``), no import cycle between modules (imports inside functions included), and
few files at the top level.  The graph is read with :mod:`ast`, nothing is imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pipeline"

#: files allowed directly in pipeline/ (the public root, the command's entry, errors, version)
TOP_LEVEL = {"__init__.py", "__main__.py", "errors.py", "_version.py", "py.typed"}
#: top-level modules every sub-package may import
LEAVES = {"pipeline.errors", "pipeline._version"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports, at import time or inside functions (not the ones
    under ``if TYPE_CHECKING:``, which never run)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _type_checking(node) for n in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod not in known:
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.add(sub if sub in known else mod)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(m, p, known) for m, p in mods.items()}


def subpackage(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else mod


def allowed(pkg: str) -> set[str] | None:
    """What the docstring of sub-package ``pkg`` says it may import (None: anything)."""
    doc = ast.get_docstring(ast.parse((ROOT.parent / pkg.replace(".", "/") / "__init__.py").read_text())) or ""
    m = re.search(r"^May import: (.+?)\.?$", doc, re.M)
    assert m, f"{pkg}/__init__.py: its docstring has no 'May import: ...' line"
    if m.group(1).strip().startswith("any"):
        return None
    return {s.strip() for s in m.group(1).split(",")}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_graph_reader_sees_imports_at_every_level():
    """The reader itself: relative, absolute, in-function and TYPE_CHECKING imports, on a tiny
    made-up module, so that a graph that is empty for a wrong reason cannot pass."""
    g = graph()
    assert "pipeline.storage.io" in g["pipeline.execution.engine"]
    assert "pipeline.plan.planner" in g["pipeline.kernels.ops"]
    assert sum(len(v) for v in g.values()) > 150
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_imports_run_one_way():
    bad = []
    for mod, deps in graph().items():
        pkg = subpackage(mod)
        if mod == "pipeline" or pkg in LEAVES or mod == "pipeline.__main__":
            continue
        may = allowed(pkg)
        if may is None:
            continue
        for d in deps:
            if subpackage(d) == pkg or d in LEAVES:
                continue
            if not any(d == a or d.startswith(a + ".") for a in may):
                bad.append(f"{mod} imports {d} (pipeline/{pkg.split('.')[1]}/__init__.py allows {', '.join(sorted(may))})")
    assert bad == []


@pytest.mark.parametrize("pkg", sorted({subpackage(m) for m in modules() if m.count(".") >= 1 and (ROOT.parent / m.replace(".", "/")).is_dir()}))
def test_each_subpackage_says_what_it_owns(pkg):
    doc = ast.get_docstring(ast.parse((ROOT.parent / pkg.replace(".", "/") / "__init__.py").read_text())) or ""
    assert len(doc.split()) >= 10
    allowed(pkg)


def test_few_files_at_the_top():
    top = {p.name for p in ROOT.iterdir() if p.is_file() and not p.name.endswith(".pyc")}
    assert top <= TOP_LEVEL, top - TOP_LEVEL
    assert not [p.name for p in ROOT.iterdir() if p.is_file() and re.match(r"_[a-z]+_", p.name)]


def test_public_names_and_entry_points_stay(tmp_path):
    """``import pipeline`` (light), ``pipeline.window_reduce``, ``pipeline.run``, the accessor and
    ``python -m pipeline`` work after the move; the result is the seed's, checked by brute force."""
    import os
    import subprocess
    import sys

    import numpy as np

    code = (
        "import sys, pipeline\n"
        "heavy = [m for m in ('numpy', 'dask', 'numba', 'zarr', 'xarray') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(pipeline.window_reduce) and callable(pipeline.run)\n"
        "import xarray as xr, numpy as np\n"
        "a = xr.DataArray(np.arange(12.0).reshape(3, 4), dims=('y', 'x'))\n"
        "print(float(a.pipeline.window_reduce(size=3).values[1, 1]))\n"
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert float(out) == float(np.arange(12.0).reshape(3, 4)[0:3, 0:3].sum())
    version = subprocess.run([sys.executable, "-m", "pipeline", "--version"], capture_output=True, text=True, env=env)
    assert version.returncode == 0 and version.stdout.startswith("pipeline ")
