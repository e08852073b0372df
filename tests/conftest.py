"""Session set-up for the whole suite: nothing beyond this machine, nothing beyond temporary folders.

- Every cache and config folder a library writes to (the package's compiled kernels, numba's cache,
  dask's and dask-jobqueue's config, hypothesis's example database, Prefect's home, XDG caches) is
  pointed at one per-session temporary folder, removed when the session ends.
- The network guard (``tests/netguard/sitecustomize.py``) is loaded here and, through
  ``PYTHONPATH``, in every Python process the tests start: a test during which any process
  connected to, or looked up, anything but loopback fails.
"""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SESSION_DIR = Path(tempfile.mkdtemp(prefix="pipeline-tests-"))
atexit.register(shutil.rmtree, SESSION_DIR, ignore_errors=True)
NETGUARD_LOG = SESSION_DIR / "netguard.log"

_ENV = {
    "PIPELINE_CACHE_DIR": SESSION_DIR / "pipeline-cache",  # the package's compiled kernels
    "NUMBA_CACHE_DIR": SESSION_DIR / "numba-cache",  # not pipeline/__pycache__ in the source tree
    "DASK_CONFIG": SESSION_DIR / "dask-config",  # dask-jobqueue writes jobqueue.yaml there
    "HYPOTHESIS_STORAGE_DIRECTORY": SESSION_DIR / "hypothesis",  # not .hypothesis/ in the cwd
    "PREFECT_HOME": SESSION_DIR / "prefect-home",
    "XDG_CACHE_HOME": SESSION_DIR / "xdg-cache",
    "XDG_CONFIG_HOME": SESSION_DIR / "xdg-config",
    "MPLCONFIGDIR": SESSION_DIR / "matplotlib",
    "PIPELINE_NETGUARD_LOG": NETGUARD_LOG,
}
for _name, _path in _ENV.items():
    os.environ[_name] = str(_path)
# Prefect's telemetry (a DNS lookup and a request to its analytics host) stays off
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE / "netguard"), os.environ.get("PYTHONPATH", "")) if p)

sys.path.insert(0, str(HERE / "netguard"))
import pytest  # noqa: E402
import sitecustomize  # noqa: E402,F401  (the guard, in this process too)

#: fixtures every test module may use: fake AWS credentials and an S3 API on loopback (moto)
pytest_plugins = ["s3_helpers"]


def _guard_lines() -> int:
    try:
        return len(NETGUARD_LOG.read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.fixture(autouse=True)
def _network_guard():
    """Fail a test during which any process of the suite reached beyond loopback."""
    before = _guard_lines()
    yield
    lines = NETGUARD_LOG.read_text().splitlines()[before:] if NETGUARD_LOG.exists() else []
    if lines:
        pytest.fail("the test reached beyond this machine (tests may use loopback only):\n" + "\n".join(lines[:5]), pytrace=False)
