"""Fixtures of the config tests: a copy of the shipped configs beside the sample data, so that a
run writes its outputs (``../out/...``) inside the test's tmp_path."""

from __future__ import annotations

import shutil

import pytest
from sample_data import ROOT


@pytest.fixture
def tree(tmp_path):
    shutil.copytree(ROOT / "data" / "samples.zarr", tmp_path / "data" / "samples.zarr")
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    return tmp_path
