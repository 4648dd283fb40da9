"""The broker's ZeroMQ ROUTER socket: bind, receive (agent, message), send to an agent.

ROUTER_MANDATORY makes a send to an unknown or vanished agent an error instead of a silent drop;
ROUTER_HANDOVER lets an agent that reconnects under the same identity take over its old route;
LINGER bounds how long closing may wait for unsent messages. `bound_socket` limits what any
peer, admitted or not, may make the socket hold: one frame of MAX_FRAME_BYTES, and a connection
that has not finished its handshake within HANDSHAKE_TIMEOUT_S.

Agents the coordinator started on its own machine may reach it on a second endpoint,
`ipc://<private folder>/broker`, without CURVE: the folder is created mode 0700, so only this
user (and root) can connect, and every message that arrives there carries the kernel's word for
the sending process (SO_PEERCRED: uid and pid, in libzmq's `Peer-Address` property), which the
coordinator checks against the agent process it started. libzmq takes a socket's security
options at each bind ("security options take effect for subsequent bind/connect calls",
zmq_setsockopt(3)): the ipc endpoint is bound before the socket becomes a CURVE server, every
TCP endpoint after, so TCP peers still need an admitted CURVE key.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Iterator

import zmq

from patas.broker.security import CurveServer
from patas.common import protocol
from patas.common.bounds import bound_socket
from patas.common.errors import PatasError, ProtocolError
from patas.common.protocol import Message

log = logging.getLogger(__name__)

LINGER_MS = 500
# Enough queued messages per agent for a full output window plus control traffic.
HIGH_WATER_MARK = 10_000
# The name of the local endpoint's socket in its private folder.
LOCAL_SOCKET_NAME = "broker"
# sun_path holds 108 bytes on Linux (104 elsewhere), its final NUL included.
MAX_UNIX_PATH_BYTES = 103


class TransportError(PatasError):
    """The broker socket could not be bound or used."""


@dataclass(frozen=True)
class PeerProcess:
    """The process at the other end of a local (ipc) connection, as the kernel reports it."""

    uid: int
    pid: int


@dataclass(frozen=True)
class Incoming:
    agent_id: str
    message: Message
    public_key: str | None  # the CURVE key the message came with (None without CURVE)
    peer: PeerProcess | None = None  # who sent it, when it came over the local endpoint


class BrokerSocket:
    """A ROUTER socket listening on one port of every given host (`port` 0: a free one)."""

    def __init__(
        self, hosts: list[str], port: int, curve: CurveServer | None, context: zmq.Context, local: bool = False
    ) -> None:
        """With `local`, also listen on a private ipc endpoint (`local_endpoint`) for this
        machine's agents, if this platform and its temporary folder allow one."""
        self.context = context
        self.socket = self.context.socket(zmq.ROUTER)
        bound_socket(self.socket)
        for option, value in (
            (zmq.ROUTER_MANDATORY, 1),
            (zmq.ROUTER_HANDOVER, 1),
            (zmq.LINGER, LINGER_MS),
            (zmq.SNDHWM, HIGH_WATER_MARK),
            (zmq.RCVHWM, HIGH_WATER_MARK),
        ):
            self.socket.setsockopt(option, value)
        self._folder: str | None = None
        self.local_endpoint: str | None = self._bind_local() if local else None
        if curve is not None:
            curve.secure(self.socket)  # every bind from here on is CURVE's
        self.port = port
        for host in hosts:
            self._bind(host)

    def _bind_local(self) -> str | None:
        """Bind `ipc://` in a new folder only this user can enter; None where that cannot be."""
        if not zmq.has("ipc"):
            return None
        folder = tempfile.mkdtemp(prefix="patas-broker-")  # mode 0700, owned by this user
        path = os.path.join(folder, LOCAL_SOCKET_NAME)
        if len(os.fsencode(path)) > MAX_UNIX_PATH_BYTES:  # a long TMPDIR: local agents use TCP and CURVE
            os.rmdir(folder)
            return None
        self._folder = folder
        endpoint = f"ipc://{path}"
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as error:
            self.close(0)
            raise TransportError(f"cannot listen on {endpoint}: {error} (set TMPDIR to a writable folder)") from None
        return endpoint

    def _bind(self, host: str) -> None:
        endpoint = f"tcp://{host}:{self.port}"
        try:
            if self.port == 0:
                self.port = self.socket.bind_to_random_port(f"tcp://{host}")
            else:
                self.socket.bind(endpoint)
        except zmq.ZMQError as error:
            self.close(0)
            raise TransportError(f"cannot listen on {endpoint}: {error} (choose another address or port with --bind)") from None

    def messages(self) -> Iterator[Incoming]:
        """Every message waiting now; a malformed one is logged and skipped."""
        while True:
            try:
                incoming = self.receive()
            except ProtocolError as error:
                log.warning("ignored a malformed message: %s", error)
                continue
            if incoming is None:
                return
            yield incoming

    def receive(self) -> Incoming | None:
        """The next message, without waiting; None when there is none."""
        try:
            identity, *frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        try:
            key = identity.get("User-Id")
        except zmq.ZMQError:
            key = None  # no security mechanism on this socket, or it came over the local endpoint
        peer = _peer_process(identity) if key is None and self.local_endpoint is not None else None
        message = protocol.decode([f.bytes for f in frames])
        return Incoming(identity.bytes.decode(errors="replace"), message, key, peer)

    def send(self, agent_id: str, message: Message, relayed: bool = False) -> bool:
        """Send to one agent (`relayed`: a message of a run passed on by a pool's daemon);
        False if the agent is not connected (any more)."""
        try:
            self.socket.send_multipart([agent_id.encode(), *protocol.encode(message, relayed)], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as error:
            if error.errno in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                return False
            raise

    def close(self, linger: int | None = None) -> None:
        self.socket.close(linger)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def _peer_process(frame: zmq.Frame) -> PeerProcess | None:
    """The sender of a message that came over ipc: libzmq (with SO_PEERCRED, as on Linux) gives
    its `Peer-Address` as `<host>:<uid>:<gid>:<pid>`. None for anything else."""
    try:
        address = frame.get("Peer-Address")
    except zmq.ZMQError:
        return None
    parts = address.rsplit(":", 3)
    if len(parts) != 4 or not (parts[1].isdigit() and parts[3].isdigit()):
        return None
    return PeerProcess(int(parts[1]), int(parts[3]))

