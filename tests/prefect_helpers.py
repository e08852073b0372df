"""The Prefect flow of ``workflows/prefect`` loaded for a test: Prefect's settings kept private to
the test, the flow module imported from its folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

FLOW_DIR = Path(__file__).resolve().parent.parent / "workflows" / "prefect"


def load_flow(monkeypatch: pytest.MonkeyPatch, home: Path) -> tuple[Any, Any]:
    """``(flow module, prefect_test_harness)``; skips the test when Prefect is not installed."""
    # Prefect's own INFO lines (its temporary server stopping at exit) would be logged to a stream
    # pytest has already closed
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    # a private Prefect home: its SQLite database is not shared with anything else running
    monkeypatch.setenv("PREFECT_HOME", str(home / "prefect-home"))
    pytest.importorskip("prefect")
    from prefect.testing.utilities import prefect_test_harness

    sys.path.insert(0, str(FLOW_DIR))
    try:
        import flow
    finally:
        sys.path.pop(0)
    return flow, prefect_test_harness
