"""What a peer may cost this process: bytes per frame, seconds to shake hands, descriptors.

Every ZeroMQ socket of patas (the broker's, the pool daemon's and its proxies', the agent's) goes
through `bound_socket` before it binds or connects, so that whoever reaches a port, authenticated
or not, can make libzmq hold at most one frame of `protocol.MAX_FRAME_BYTES` and only for
`HANDSHAKE_TIMEOUT_S` unless it proves it holds an admitted key. Both limits are enforced by
libzmq's decoder and stream engine, before any message reaches patas.

The coordinator and the pool daemon call `raise_descriptor_limit` at start: a coordinator at the
common soft limit of 1024 descriptors was made to fail writing a task's output by 1,100 idle
connections. Agents, whose limit their tasks inherit, call `settle_descriptor_limit`.
"""

from __future__ import annotations

import logging
import os
import resource

import zmq

from patas.common.protocol import MAX_FRAME_BYTES

log = logging.getLogger(__name__)

# A peer must finish the ZMTP greeting and the CURVE handshake (a few round trips, even over an
# SSH tunnel) within this time, or libzmq closes its connection and frees its descriptor.
HANDSHAKE_TIMEOUT_S = 5.0
# Where a process that raised its descriptor limit leaves the limit it started with.
INHERITED_LIMIT_VARIABLE = "PATAS_INHERITED_DESCRIPTOR_LIMIT"
# A running task holds two pipes and a pidfd, and its command's own descriptors pass through
# fork; an agent itself needs its socket, libzmq's internals and a margin.
DESCRIPTORS_PER_TASK = 4
AGENT_DESCRIPTORS = 64


def bound_socket(socket: zmq.Socket) -> None:
    """Limit what any peer of `socket` may make it hold (call before bind or connect)."""
    # libzmq checks each frame's announced size against MAXMSGSIZE as soon as it has read the
    # frame's header, during the handshake as after it, and drops the connection on excess: a
    # header claiming 4 GiB costs nothing.
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
    socket.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_TIMEOUT_S * 1000))


def raise_descriptor_limit() -> int:
    """Raise this process's soft limit on open descriptors to its hard limit; the new soft limit.

    The hard limit is what the administrator grants (often 4096 to 1M); the soft default of 1024
    is a relic of select(). libzmq accepts connections while descriptors last and each
    unauthenticated one lives at most HANDSHAKE_TIMEOUT_S, so an outsider must open (hard limit)
    connections within that time, again and again, to exhaust them; below that, a run never
    lacks a descriptor for its output. The soft limit this process started with is left in the
    environment, so that the agents it starts give their tasks that limit, not this one (some
    programs close every descriptor up to the soft limit, or break past FD_SETSIZE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    os.environ.setdefault(INHERITED_LIMIT_VARIABLE, str(soft))
    return _set_soft_limit(hard if hard != resource.RLIM_INFINITY else soft)


def settle_descriptor_limit(slots: int) -> int:
    """An agent's soft limit: what patas was started with, raised only as far as `slots` tasks
    need (their tasks inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inherited = os.environ.pop(INHERITED_LIMIT_VARIABLE, "")
    base = int(inherited) if inherited.isdigit() else soft
    needed = slots * DESCRIPTORS_PER_TASK + AGENT_DESCRIPTORS
    return _set_soft_limit(min(hard, max(base, needed)))


def _set_soft_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if wanted == soft:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as error:
        log.debug("cannot set the descriptor limit from %d to %d: %s", soft, wanted, error)
        return soft
    return wanted
