"""The distribution is ``pipeline-windows`` (``pipeline`` on the package index is an unrelated
project); it installs the ``pipeline`` package and the ``pipeline`` command, and its metadata
gives the version that ``pipeline --version`` prints."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pipeline
from pipeline._version import DISTRIBUTION

ROOT = Path(__file__).resolve().parents[1]


def test_distribution_name_command_and_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == "pipeline-windows"
    dist = metadata.distribution(DISTRIBUTION)
    assert dist.version == project["version"] == pipeline.__version__
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts["pipeline"].startswith("pipeline.")
    # the test extra names this distribution's own extras by its name
    assert any(req.startswith(f"{DISTRIBUTION}[") for req in project["optional-dependencies"]["test"])
