"""Fuzzing the config schema: thousands of mutated configs (as mappings and as YAML text); every
one is either accepted (and then satisfies the schema's invariants and plans or is refused with
a user error) or refused with a one-line :class:`PipelineError` naming a key — never another
exception."""

from __future__ import annotations

import copy
import math
import os
import string
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config.load import MAX_WINDOW, Config, load_config, parse_config
from pipeline.errors import ConfigError, PipelineError
from pipeline.plan.planner import ArraySpec, Plan, make_plan

VALID = {
    "inputs": {"a": {"path": "in.zarr", "array": "a"}, "b": {"path": "in.zarr", "array": "b"}},
    "op": "a**2 - b**2",
    "window": {"size": 3, "reduce": "sum", "boundary": "shrink"},
    "output": {"path": "out.zarr", "array": "result", "overwrite": False},
    "compute": {"scheduler": "threads", "chunks": "auto", "workers": 2},
}
KEYS = [
    (),
    ("inputs",),
    ("inputs", "a"),
    ("inputs", "a", "path"),
    ("inputs", "a", "array"),
    ("inputs", "b", "path"),
    ("op",),
    ("window",),
    ("window", "size"),
    ("window", "reduce"),
    ("window", "boundary"),
    ("output",),
    ("output", "path"),
    ("output", "array"),
    ("output", "overwrite"),
    ("compute",),
    ("compute", "scheduler"),
    ("compute", "chunks"),
    ("compute", "workers"),
]

text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
paths = st.one_of(
    text,
    st.sampled_from(["in.zarr", "../x.zarr", "/tmp/x.zarr", "s3://b/k", "ftp://h/x", "file:///x", "a:b", "C:/x", "~/x", "\x00", "./"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-3, max_value=MAX_WINDOW + 3),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    paths,
    st.sampled_from(["auto", "sum", "valid", "shrink", "threads", "a", "a**2", "a - b", "__import__('os')", "1e309"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.one_of(text, st.integers(), st.none()), children, max_size=4)
    ),
    max_leaves=6,
)


def _set(cfg: dict, key: tuple, value) -> dict:
    if not key:
        return value
    node = cfg
    for part in key[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[key[-1]] = value
    return cfg


def _check_accepted(cfg: Config, base: Path) -> None:
    for spec in list(cfg.inputs.values()) + [cfg.output]:
        assert spec.path.startswith(("s3://", "s3a://", "gs://", "gcs://", "az://", "abfs", "adl://", "http", "file://", "memory://")) or os.path.isabs(spec.path)
    sizes = (cfg.window.size,) * 2 if isinstance(cfg.window.size, int) else cfg.window.size
    assert all(type(s) is int and 1 <= s <= MAX_WINDOW for s in sizes)
    # the accepted config goes on to the plan: a plan or a user error, nothing else
    specs = {n: ArraySpec(n, (7, 9), np.dtype("uint8"), (4, 4), None, f"{n}.zarr") for n in cfg.inputs}
    try:
        plan = make_plan(cfg.op, specs, size=cfg.window.size, reduce=cfg.window.reduce, boundary=cfg.window.boundary, chunks=cfg.compute.chunks)
    except PipelineError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(plan, Plan) and math.prod(plan.out_shape) >= 1


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(mutations=st.lists(st.tuples(st.sampled_from(KEYS + [("extra",), ("window", "sise"), ("inputs", "1x")]), values), min_size=1, max_size=4))
def test_mutated_configs_never_crash(tmp_path_factory, mutations):
    base = Path("/tmp/fuzz-base")
    cfg = copy.deepcopy(VALID)
    for key, value in mutations:
        cfg = _set(cfg, key, copy.deepcopy(value)) if isinstance(cfg, dict) else value
    try:
        parsed = parse_config(cfg, base_dir=base, source="fuzz.yaml")
    except ConfigError as e:
        assert 1 <= len(e.lines) <= 13, e.lines  # every problem on its own line, a bounded list
        for msg in e.lines:
            assert (msg.startswith("fuzz.yaml") or msg.startswith("... and ")) and "\n" not in msg and len(msg) < 1000, msg
        return
    _check_accepted(parsed, base)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(value=values)
def test_arbitrary_documents_never_crash(value):
    try:
        parsed = parse_config(value, base_dir="/tmp", source="fuzz.yaml")
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    _check_accepted(parsed, Path("/tmp"))


VALID_TEXT = yaml.safe_dump(VALID, sort_keys=False)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(VALID_TEXT)),
            st.integers(min_value=0, max_value=8),
            st.text(alphabet=string.printable + "!&*|>%@`\x00\x85\u2028\ufeff", max_size=6),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_mutated_yaml_text_never_crashes(tmp_path_factory, edits):
    text_ = VALID_TEXT
    for pos, cut, insert in edits:
        text_ = text_[:pos] + insert + text_[pos + cut :]
    path = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    path.write_text(text_, encoding="utf-8", errors="surrogatepass")
    try:
        parsed = load_config(path)
    except ConfigError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e), str(e)
        return
    _check_accepted(parsed, path.parent)
