"""The messages of a pool's control socket (local only): `patas pool` and runs ask the pool's
daemon for its status, to lend agents, to drain, revoke, admit or stop them. They travel as the
agents' messages do (patas.common.protocol), registered when pool code is imported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from patas.common.protocol import Message, register


@dataclass(frozen=True)
class PoolStatusRequest(Message):
    KIND: ClassVar[bytes] = b"P-STATUS"


@dataclass(frozen=True)
class PoolAgentStatus:
    """One row of a pool's status (travels as a list inside PoolStatus)."""

    agent_id: str
    node_name: str
    hostname: str
    slots: int
    state: str  # connecting | ready | draining | lost
    running: int
    last_contact_s: float | None
    runs: int


@dataclass(frozen=True)
class PoolStatus(Message):
    KIND: ClassVar[bytes] = b"P-STATE"
    agents: list[list]  # PoolAgentStatus fields, in order


@dataclass(frozen=True)
class PoolAttach(Message):
    """Lend a pool agent to a run: act as that agent toward the run's broker, with this config."""

    KIND: ClassVar[bytes] = b"P-ATTACH"
    agent_id: str
    config: bytes


@dataclass(frozen=True)
class PoolDrain(Message):
    """Agents (all when empty) take no new run and exit once their runs end."""

    KIND: ClassVar[bytes] = b"P-DRAIN"
    agent_ids: list[str]


@dataclass(frozen=True)
class PoolRevoke(Message):
    KIND: ClassVar[bytes] = b"P-REVOKE"
    agent_id: str


@dataclass(frozen=True)
class PoolAllow(Message):
    """Admit an agent's public key (issued by `patas pool up` or `patas pool issue`)."""

    KIND: ClassVar[bytes] = b"P-ALLOW"
    agent_id: str
    public_key: str
    node_name: str


@dataclass(frozen=True)
class PoolStop(Message):
    """Send every agent away, then exit."""

    KIND: ClassVar[bytes] = b"P-STOP"


@dataclass(frozen=True)
class PoolReply(Message):
    KIND: ClassVar[bytes] = b"P-OK"
    error: str  # empty when the request was done


register(PoolStatusRequest, PoolStatus, PoolAttach, PoolDrain, PoolRevoke, PoolAllow, PoolStop, PoolReply)
