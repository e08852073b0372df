"""The CI sessions: ``.ci/run`` runs ``lint``, then ``tests-3.11`` and ``tests-3.13`` side by
side -- the linter over every Python file the repository ships, the type checker, and the test
suite on the oldest and the newest supported Python.  Python 3.13 gets the newest releases of
every dependency; 3.11 the same resolver's choice for 3.11.  ``minimum`` (not part of CI:
``nox -s minimum``) installs the oldest releases pyproject allows and runs a quick subset.  Run
one locally with ``nox -s tests-3.13`` (pyenv users: ``PYENV_VERSION=3.11.7:3.13.0``, or whatever
``pyenv versions`` lists, so that both ``python3.11`` and ``python3.13`` are found)."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True

#: the oldest and the newest Python the project supports (pyproject's requires-python and classifiers)
PYTHONS = ["3.11", "3.13"]


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """ruff over every Python file the repository ships (package, tests, scripts, workflows,
    data, benchmarks, this file)."""
    session.install("-q", "ruff>=0.17")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """mypy over the package, then the README's test command, ``python -m pytest -q``, on each
    supported Python."""
    session.install("-q", "--upgrade", "pip")
    session.install("-q", "-e", ".[test]")
    session.run("mypy", "pipeline")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


#: the oldest release of each dependency that this project is tested with (pyproject's lower
#: bounds are these): the ``minimum`` session installs exactly these
MINIMUM = [
    "numpy==2.0.2",
    "scipy==1.13.1",
    "dask[array]==2025.1.0",
    "distributed==2025.1.0",
    "fsspec==2025.2.0",
    "zarr==3.1.3",
    "numcodecs==0.16.1",
    "crc32c==2.7",
    "xarray==2025.7.0",
    "typer==0.16.0",  # 0.15 fails with click >= 8.2 (make_metavar)
    "rich==13.7.1",
    "pydantic==2.8.2",
    "pyyaml==6.0.1",
    "numba==0.60.0",
    "cryptography==50.0.0",
    "prometheus_client==0.20.0",
]


@nox.session(python=PYTHONS[0])
def minimum(session: nox.Session) -> None:
    """The oldest supported releases of every dependency (:data:`MINIMUM`) on the oldest Python,
    then a quick subset of the tests: the seed's example end to end, the Python API and the command line."""
    session.install("-q", "--upgrade", "pip")
    session.install("-q", *MINIMUM, "pytest>=8", "hypothesis>=6.100")
    session.install("-q", "--no-deps", "-e", ".")
    session.run("python", "-m", "pip", "check")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *(session.posargs or ["tests/test_seed.py", "tests/api", "tests/cli/test_cli_completion.py"]))
