"""The suite's network guard (``tests/netguard/sitecustomize.py``) refuses, before any packet is
sent, every listener, connection and name lookup beyond loopback, in this process and in the processes
the tests start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import sitecustomize as guard

# TEST-NET-1 (RFC 5737): never routed; the guard refuses it before the socket is used
FAR = ("192.0.2.1", 8786)


def test_guard_is_installed_here_and_refuses_before_connecting(tmp_path, monkeypatch):
    log = tmp_path / "guard.log"
    monkeypatch.setattr(guard, "_LOG", str(log))
    assert socket.socket.connect is guard.connect
    with socket.socket() as s, pytest.raises(OSError, match="loopback only"):
        s.connect(FAR)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(OSError, match="loopback only"):
        s.sendto(b"x", FAR)
    with pytest.raises(socket.gaierror, match="local names only"):
        socket.getaddrinfo("example.com", 80)
    for everywhere in ("0.0.0.0", ""):
        with socket.socket() as s, pytest.raises(OSError, match="listen on loopback only"):
            s.bind((everywhere, 0))
    assert len(log.read_text().splitlines()) == 5
    # loopback works: a real listener on 127.0.0.1, reached by name and by address
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        for host in ("127.0.0.1", "localhost"):
            with socket.create_connection((host, port), timeout=5):
                pass
    assert len(log.read_text().splitlines()) == 5


@pytest.mark.parametrize("host", ["192.0.2.1", "10.0.0.1", "::ffff:192.0.2.1"])
def test_far_addresses_are_refused(host):
    assert not guard._allowed(socket.AF_INET, (host, 1))
    assert guard._allowed(socket.AF_INET, ("127.0.0.2", 1)) and guard._allowed(socket.AF_INET6, ("::1", 1, 0, 0))


def test_guard_reaches_child_processes(tmp_path):
    log = tmp_path / "child.log"
    code = (
        "import socket\n"
        "s = socket.socket()\n"
        "try:\n"
        f"    s.connect({FAR!r})\n"
        "except OSError as e:\n"
        "    print('refused:', e)\n"
    )
    env = {**os.environ, "PIPELINE_NETGUARD_LOG": str(log)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "refused: " in out.stdout and "loopback only" in out.stdout, out.stderr
    assert "connect to ('192.0.2.1', 8786)" in log.read_text()
