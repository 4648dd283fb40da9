"""Agents that cannot reach the coordinator connect through their own SSH connection.

The node's sshd listens on a loopback port (a remote port forward, like `ssh -R`); each connection
the agent makes to it arrives here as an SSH channel, which is joined to the broker's local port.
"""

from __future__ import annotations

import logging
import select
import socket
import threading

import paramiko

from patas.broker.ssh.options import NodeError

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024


class ReverseTunnel:
    def __init__(self, transport: paramiko.Transport, broker_host: str, broker_port: int) -> None:
        self.transport = transport
        self.broker = (broker_host, broker_port)
        try:
            self.remote_port = transport.request_port_forward("127.0.0.1", 0, handler=self._accept)
        except paramiko.SSHException as error:
            raise NodeError(f"cannot open a tunnel (is AllowTcpForwarding on?): {error}") from None

    def _accept(self, channel: paramiko.Channel, origin: tuple[str, int], server: tuple[str, int]) -> None:
        try:
            broker = socket.create_connection(self.broker)
        except OSError as error:
            log.warning("tunnel: cannot reach the broker at %s:%d: %s", *self.broker, error)
            channel.close()
            return
        threading.Thread(target=_pump, args=(channel, broker), daemon=True, name="patas-tunnel").start()

    def close(self) -> None:
        try:
            self.transport.cancel_port_forward("127.0.0.1", self.remote_port)
        except (paramiko.SSHException, EOFError, OSError):
            pass  # the connection is already gone


def _pump(channel: paramiko.Channel, broker: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    try:
        while True:
            readable, _, _ = select.select([channel, broker], [], [])
            if channel in readable:
                data = channel.recv(CHUNK_BYTES)
                if not data:
                    break
                broker.sendall(data)
            if broker in readable:
                data = broker.recv(CHUNK_BYTES)
                if not data:
                    break
                channel.sendall(data)
    except OSError:
        pass
    finally:
        channel.close()
        broker.close()
