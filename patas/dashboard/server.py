"""Serving the dashboard: its socket, its URL, and uvicorn running the app on that socket.

The socket is bound here, before uvicorn starts, so that a port in use is one clear error (and
`--port 0` tells which free port the system gave) rather than uvicorn's log lines.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from patas.common.errors import PatasError

if TYPE_CHECKING:
    import uvicorn

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
# How long a stop (Ctrl-C) waits for open pages' live streams before closing them.
SHUTDOWN_GRACE_S = 1.0
LISTEN_BACKLOG = 64


class DashboardError(PatasError):
    """The dashboard cannot be served: its address or port, or the lab."""


@dataclass(frozen=True)
class Listening:
    """The bound socket and the address it got (the port the system chose for --port 0)."""

    socket: socket.socket
    host: str
    port: int

    def url(self, token: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={token}"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses no other machine reaches."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> Listening:
    """A socket bound to host:port and listening, or DashboardError saying what to change."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise DashboardError(f"--bind {host}: not an address of this machine ({error.strerror}); give one such as 127.0.0.1") from None
    family, kind, protocol, _, address = infos[0]
    sock = socket.socket(family, kind, protocol)
    # As uvicorn does: a port left in TIME_WAIT by the last dashboard can be bound again at once;
    # a port another process listens on still cannot.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise _bind_error(host, port, error) from None
    sock.listen(LISTEN_BACKLOG)
    bound_host, bound_port = sock.getsockname()[:2]
    return Listening(sock, str(bound_host), int(bound_port))


def _bind_error(host: str, port: int, error: OSError) -> DashboardError:
    if error.errno == errno.EADDRINUSE:
        return DashboardError(f"--port {port}: {host}:{port} is in use already (give another --port, or --port 0 for a free one)")
    if error.errno == errno.EADDRNOTAVAIL:
        return DashboardError(f"--bind {host}: not an address of this machine; give one such as 127.0.0.1")
    if error.errno == errno.EACCES:
        return DashboardError(f"--port {port}: not allowed to listen on it here (ports below 1024 need root); give another --port")
    return DashboardError(f"--bind {host} --port {port}: {error.strerror}")


def check_lab(lab_root: Path) -> None:
    """Refuse a lab folder that is not there (a typo in -o would otherwise serve an empty page)."""
    if not lab_root.is_dir():
        raise DashboardError(f"-o {lab_root}: no such pataslab folder (give the folder patas explore wrote into)")


def serve(lab_root: Path, listening: Listening, token: str) -> None:
    """Serve the lab's dashboard on the bound socket until interrupted (Ctrl-C)."""
    dashboard_server(lab_root, token).run(sockets=[listening.socket])


def dashboard_server(lab_root: Path, token: str) -> uvicorn.Server:
    """The uvicorn server of the lab's dashboard, to run on a bound socket (`run(sockets=...)`);
    setting its `should_exit` stops it."""
    import uvicorn

    from patas.dashboard.app import dashboard_app

    config = uvicorn.Config(
        dashboard_app(lab_root, token), log_level="warning", access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S, lifespan="off",
    )  # fmt: skip
    return uvicorn.Server(config)
