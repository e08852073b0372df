"""The command line as a shell and a script see it: bash completion through the script that
``--show-completion`` prints (commands, and ``--log-format``'s two choices), a bad
``--log-format`` refused by name, and no private Typer/click names in the package."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"
BIN = Path(sys.executable).parent


def _complete(words: str) -> list[str]:
    """What bash offers after ``words`` (the last word being completed), through the completion
    function that ``pipeline --show-completion bash`` defines."""
    if shutil.which("bash") is None or not (BIN / "pipeline").exists():
        pytest.skip("needs bash and the pipeline console script")
    script = (
        'eval "$(pipeline --show-completion bash)"; '
        f"COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); "
        '_pipeline_completion pipeline; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_bash_completes_commands_and_log_formats():
    assert _complete("pipeline ve") == ["verify"]
    assert sorted(_complete("pipeline va")) == ["validate"]
    assert sorted(_complete("pipeline run --log-format ''")) == ["json", "text"]


def test_install_completion_is_offered():
    out = CliRunner().invoke(app, ["--help"]).output
    assert "--install-completion" in out and "--show-completion" in out


def test_bad_log_format_names_the_option_and_its_choices(tmp_path):
    res = CliRunner().invoke(app, ["run", "--log-format", "xml", str(tmp_path / "c.yaml")])
    assert res.exit_code == 2
    assert "--log-format" in res.output and "text" in res.output and "json" in res.output


def test_no_private_typer_or_click_names():
    private = re.compile(r"typer\._|display_type_rich|click\._")
    hits = [f"{p.relative_to(PACKAGE)}:{i}" for p in PACKAGE.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if private.search(line)]
    assert not hits, hits
