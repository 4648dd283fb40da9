"""The broker's ZeroMQ ROUTER socket: bind, receive (agent, message), send to an agent.

ROUTER_MANDATORY makes a send to an unknown or vanished agent an error instead of a silent drop;
ROUTER_HANDOVER lets an agent that reconnects under the same identity take over its old route;
LINGER bounds how long closing may wait for unsent messages.
"""

from __future__ import annotations

import zmq

from patas.common import protocol
from patas.common.errors import PatasError
from patas.common.protocol import Message

LINGER_MS = 500
# Enough queued messages per agent for a full output window plus control traffic.
HIGH_WATER_MARK = 10_000


class TransportError(PatasError):
    """The broker socket could not be bound or used."""


class BrokerSocket:
    def __init__(self, bind_address: str, context: zmq.Context | None = None) -> None:
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.ROUTER)
        for option, value in (
            (zmq.ROUTER_MANDATORY, 1),
            (zmq.ROUTER_HANDOVER, 1),
            (zmq.LINGER, LINGER_MS),
            (zmq.SNDHWM, HIGH_WATER_MARK),
            (zmq.RCVHWM, HIGH_WATER_MARK),
        ):
            self.socket.setsockopt(option, value)
        try:
            if bind_address.endswith(":0") or bind_address.endswith(":*"):
                host = bind_address.rsplit(":", 1)[0]
                port = self.socket.bind_to_random_port(host)
                self.address = f"{host}:{port}"
            else:
                self.socket.bind(bind_address)
                self.address = bind_address
        except zmq.ZMQError as error:
            self.socket.close(0)
            raise TransportError(f"cannot listen on {bind_address}: {error} (choose another address or port)") from None

    def receive(self) -> tuple[str, Message] | None:
        """The next message, without waiting; None when there is none."""
        try:
            identity, *frames = self.socket.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        return identity.decode(errors="replace"), protocol.decode(frames)

    def send(self, agent_id: str, message: Message) -> bool:
        """Send to one agent; False if the agent is not connected (any more)."""
        try:
            self.socket.send_multipart([agent_id.encode(), *protocol.encode(message)], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as error:
            if error.errno in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                return False
            raise

    def close(self) -> None:
        self.socket.close()

