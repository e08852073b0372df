"""Operating-system faults while a run writes (issue 22, item 22): a folder the tool keeps replaced
by a file, a permission refused, the file size limit.  Each gives one line naming the path and the
cause (exit 1, not "internal error"), keeps the blocks done, and the rerun after the fix gives the
brute-force result."""

from __future__ import annotations

import errno
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_swap import seen, setup
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.errors import WriteError
from pipeline.runner import runconfig
from pipeline.storage import ledger, lock


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path, setup(tmp_path, "sum->mean")


def _replace_by_file(folder: Path) -> None:
    shutil.rmtree(folder)
    folder.write_text("")


def _replacing(path_of, calls: list) -> runconfig.ProgressFn:
    """A progress callback that, after the first block, replaces a folder by a file."""

    def progress(done: int, total: int) -> None:
        if not calls:
            calls.append(path_of())
            _replace_by_file(calls[0])

    return progress


@pytest.mark.parametrize("which", ["done", "chunks"])
def test_a_folder_replaced_by_a_file_is_named_and_the_rerun_is_exact(root, which):
    tmp, refs = root
    out = tmp / "out.zarr"
    calls: list = []
    where = {
        "done": lambda: next(ledger.sidecar(out).glob("result/*/done")),
        "chunks": lambda: max((out / "result" / "c").iterdir()),  # the last chunk row (not yet written)
    }[which]
    with pytest.raises(WriteError) as info:
        runconfig.run(tmp / "A.yaml", progress=_replacing(where, calls))
    msg = str(info.value)
    assert "\n" not in msg and ("Not a directory" in msg or "File exists" in msg) and "rerun to resume" in msg, msg
    assert str(calls[0]) in msg or (which == "chunks" and str(calls[0].parent) in msg), msg
    calls[0].unlink()
    if which == "chunks":
        calls[0].mkdir()
    assert runconfig.run(tmp / "A.yaml").status == runconfig.DONE
    assert seen(out, refs) == "A"


def test_permission_denied_on_the_ledger_names_the_file(root, monkeypatch):
    tmp, refs = root

    def refuse(self, index):
        raise PermissionError(errno.EACCES, "Permission denied", f"{self.done_dir}/t.{index[0]}.{index[1]}.0123456789ab.log")

    monkeypatch.setattr(ledger.TaskLog, "__call__", refuse)
    res = CliRunner().invoke(app, ["run", "-q", str(tmp / "A.yaml")])
    assert res.exit_code == 1, res.output
    line = res.output.strip()
    assert "\n" not in line and "internal error" not in line and "Permission denied" in line and "/done/" in line, line
    monkeypatch.undo()
    assert runconfig.run(tmp / "A.yaml").status == runconfig.DONE and seen(tmp / "out.zarr", refs) == "A"


def test_permission_denied_on_the_lock_says_nothing_was_written(root, monkeypatch):
    tmp, _ = root

    def refuse(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self.path))

    monkeypatch.setattr(lock.OutputLock, "_create", refuse)
    res = CliRunner().invoke(app, ["run", "-q", str(tmp / "A.yaml")])
    assert res.exit_code == 1, res.output
    assert res.output.strip() == (
        f"error: cannot write {ledger.sidecar(tmp / 'out.zarr') / 'lock'}: Permission denied (permission denied: check the owner "
        "and mode of the output and its .pipeline folder); nothing was written: fix it and rerun to resume"
    )


def test_file_size_limit_is_named_and_the_rerun_is_exact(root):
    tmp, refs = root

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "-q", "A.yaml"], cwd=tmp, capture_output=True, text=True, preexec_fn=limit
    )
    assert proc.returncode == 1, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "File too large" in line and "ulimit -f" in line and "out.zarr:result" in line, line
    assert runconfig.run(tmp / "A.yaml").status == runconfig.DONE and seen(tmp / "out.zarr", refs) == "A"


# -- item 23: a signal during the teardown after the work --------------------------------------------


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_during_teardown_keeps_the_exit_code_and_says_so(root, sig):
    """The console script, its teardown made slow (an exit handler that sleeps): a signal then
    ends it with the command's exit code and one line, not killed by the signal in silence."""
    tmp, refs = root
    ready = tmp / "tearing-down"
    code = (
        "import atexit, sys, time\n"
        "from pipeline.cli.main import entrypoint\n"
        "atexit.register(time.sleep, 60)\n"  # registered first: runs last
        f"atexit.register(open, {str(ready)!r}, 'w')\n"
        "sys.argv = ['pipeline', 'run', '-q', 'A.yaml']\n"
        "entrypoint()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() - t0 < 120, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(getattr(signal, sig))
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert stderr.strip() == f"warning: {sig} received after the command finished; its work is complete (exit code 0)"
    assert seen(tmp / "out.zarr", refs) == "A"
