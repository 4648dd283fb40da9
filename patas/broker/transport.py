"""The broker's ZeroMQ ROUTER socket: bind, receive (agent, message), send to an agent.

ROUTER_MANDATORY makes a send to an unknown or vanished agent an error instead of a silent drop;
ROUTER_HANDOVER lets an agent that reconnects under the same identity take over its old route;
LINGER bounds how long closing may wait for unsent messages. `bound_socket` limits what any
peer, admitted or not, may make the socket hold: one frame of MAX_FRAME_BYTES, and a connection
that has not finished its handshake within HANDSHAKE_TIMEOUT_S.
"""

from __future__ import annotations

import logging
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


class TransportError(PatasError):
    """The broker socket could not be bound or used."""


@dataclass(frozen=True)
class Incoming:
    agent_id: str
    message: Message
    public_key: str | None  # the CURVE key the message came with (None without CURVE)


class BrokerSocket:
    """A ROUTER socket listening on one port of every given host (`port` 0: a free one)."""

    def __init__(self, hosts: list[str], port: int, curve: CurveServer | None, context: zmq.Context) -> None:
        self.context = context
        self.socket = self.context.socket(zmq.ROUTER)
        if curve is not None:
            curve.secure(self.socket)
        bound_socket(self.socket)
        for option, value in (
            (zmq.ROUTER_MANDATORY, 1),
            (zmq.ROUTER_HANDOVER, 1),
            (zmq.LINGER, LINGER_MS),
            (zmq.SNDHWM, HIGH_WATER_MARK),
            (zmq.RCVHWM, HIGH_WATER_MARK),
        ):
            self.socket.setsockopt(option, value)
        self.port = port
        for host in hosts:
            self._bind(host)

    def _bind(self, host: str) -> None:
        endpoint = f"tcp://{host}:{self.port}"
        try:
            if self.port == 0:
                self.port = self.socket.bind_to_random_port(f"tcp://{host}")
            else:
                self.socket.bind(endpoint)
        except zmq.ZMQError as error:
            self.socket.close(0)
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
            key = None  # no security mechanism on this socket
        message = protocol.decode([f.bytes for f in frames])
        return Incoming(identity.bytes.decode(errors="replace"), message, key)

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

    def close(self) -> None:
        self.socket.close()

