"""A hostile ZeroMQ peer in raw bytes: greetings and frame headers (ZMTP 3.0, rfc.zeromq.org/spec/23)
for tests that check what patas's sockets let a stranger cost them."""

from __future__ import annotations

import socket
from pathlib import Path

import zmq

MIB = 1024 * 1024
# A long message frame whose size field claims 4 GiB.
FOUR_GB_FRAME_HEADER = b"\x02" + (4 * 1024 * MIB).to_bytes(8, "big")
# How much garbage a hostile peer streams after such a header before giving up.
STREAMED_BYTES = 128 * MIB


def curve_greeting(as_server: bool) -> bytes:
    """The 64-byte greeting of a peer asking for the CURVE mechanism."""
    return b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + b"CURVE".ljust(20, b"\0") + bytes([as_server]) + bytes(31)


def claim_four_gigabytes(peer: socket.socket, as_server: bool) -> None:
    """Greet, announce a 4 GiB frame and stream garbage until cut off (or STREAMED_BYTES sent)."""
    chunk = b"\xaa" * MIB
    try:
        peer.sendall(curve_greeting(as_server) + FOUR_GB_FRAME_HEADER)
        for _ in range(STREAMED_BYTES // MIB):
            peer.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the patas side hung up: what the tests want


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def send_unless_turned_away(peer: zmq.Socket, frames: list[bytes]) -> bool:
    """Send a stranger's message without waiting; False if it never left the socket.

    A peer the broker turns away at the handshake may be left with no connection to queue on
    (libzmq drops it after the failed handshake, and a DEALER with none blocks): then nothing it
    sends can reach the broker at all, which is what the tests check."""
    try:
        peer.send_multipart(frames, zmq.NOBLOCK)
    except zmq.Again:
        return False
    return True
