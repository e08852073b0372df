"""The tests' network guard, loaded by every Python process the tests start (this folder is put
first on ``PYTHONPATH`` by ``tests/conftest.py``; the test process itself imports it too).

Tests may reach this machine only: a listener on any interface but loopback, a connection (TCP or UDP ``connect``, ``sendto``) to an address
outside loopback, or a name lookup of a name other than ``localhost`` and this machine's own name,
is refused with ``OSError`` and recorded, one line, in the file named by
``PIPELINE_NETGUARD_LOG``; ``conftest.py`` fails the test during which a line appeared.
"""

from __future__ import annotations

import ipaddress
import os
import socket

_LOG = os.environ.get("PIPELINE_NETGUARD_LOG")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
try:
    _LOCAL_NAMES.add(socket.gethostname().lower())
except OSError:  # pragma: no cover
    pass


def _record(what: str) -> None:
    if _LOG:
        try:
            with open(_LOG, "a") as f:
                f.write(f"pid {os.getpid()}: {what}\n")
        except OSError:  # pragma: no cover
            pass


def _host(host: object) -> str | None:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return host.strip("[]").split("%", 1)[0].lower() if isinstance(host, str) else None


def _is_loopback_host(host: object, *, literal_ok: bool = False) -> bool:
    """Loopback (or this machine's own name); with ``literal_ok``, any address literal (looking
    one up asks no name server)."""
    if host is None:
        return True
    h = _host(host)
    if h is None:
        return False
    if h == "" or h in _LOCAL_NAMES or h.endswith(".localhost"):
        return True  # "" is a bind-style empty host
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        return False
    # the unspecified address (0.0.0.0, ::) reaches this machine
    return literal_ok or ip.is_loopback or ip.is_unspecified


def _allowed(family: int, address: object) -> bool:
    if family == getattr(socket, "AF_UNIX", None) or not isinstance(address, tuple) or not address:
        return True
    return _is_loopback_host(address[0])


_bind = socket.socket.bind
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_sendto = socket.socket.sendto
_getaddrinfo = socket.getaddrinfo


def _guard(sock: socket.socket, address: object, how: str) -> None:
    if not _allowed(sock.family, address):
        _record(f"{how} to {address!r}")
        raise OSError(101, f"network guard: tests may reach loopback only, not {address!r}")


def bind(self, address):  # type: ignore[no-untyped-def]
    """A listener on every interface ("", 0.0.0.0, ::) or on another host's address is refused:
    servers the tests start (schedulers, workers, dashboards, S3) listen on loopback only."""
    if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and address:
        h = _host(address[0])
        try:
            ok = h is not None and h not in ("", "0.0.0.0", "::") and (h in _LOCAL_NAMES or ipaddress.ip_address(h).is_loopback)
        except ValueError:
            ok = False
        if not ok:
            _record(f"bind to {address!r}")
            raise OSError(99, f"network guard: tests may listen on loopback only, not {address!r}")
    return _bind(self, address)


def connect(self, address):  # type: ignore[no-untyped-def]
    _guard(self, address, "connect")
    return _connect(self, address)


def connect_ex(self, address):  # type: ignore[no-untyped-def]
    _guard(self, address, "connect")
    return _connect_ex(self, address)


def sendto(self, data, *args):  # type: ignore[no-untyped-def]
    address = args[-1] if args else None
    _guard(self, address, "sendto")
    return _sendto(self, data, *args)


def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if not _is_loopback_host(host, literal_ok=True):
        _record(f"name lookup of {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, f"network guard: tests may look up local names only, not {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


if not getattr(socket, "_pipeline_netguard", False):
    socket.socket.bind = bind  # type: ignore[method-assign]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    socket._pipeline_netguard = True  # type: ignore[attr-defined]
