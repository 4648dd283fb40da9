"""What an agent is told when it starts: where the broker is, who it is, and its keys.

The coordinator writes this as one JSON line on the agent's standard input — over the SSH channel
for a remote node — so the secret key never appears on a command line (visible in `ps`) or in a
file. An agent started this way then keeps reading its standard input: end of file means the
coordinator or its SSH connection is gone, and the agent kills its tasks and exits.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import IO

from patas.common.errors import ProtocolError


@dataclass(frozen=True)
class CurveKeys:
    """ZeroMQ CURVE keys (Z85 text): the broker's public key and the agent's own pair."""

    server_public: str
    public: str
    secret: str


@dataclass(frozen=True)
class AgentConfig:
    broker_address: str
    agent_id: str
    slots: int
    keys: CurveKeys | None = None
    debug: bool = False
    # A pool agent outlives runs and brokers: when its broker goes silent it kills its tasks and
    # says hello again until a broker answers, instead of exiting.
    persistent: bool = False
    # GPUs (device numbers as CUDA counts them) that the agent's workers share out: each worker
    # slot gets `gpus_per_task` of its own in CUDA_VISIBLE_DEVICES and PATAS_GPUS. None: none.
    gpus: tuple[str, ...] | None = None
    gpus_per_task: int = 1

    def to_line(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode() + b"\n"

    @classmethod
    def read(cls, stream: IO[bytes]) -> "AgentConfig":
        line = stream.readline()
        if not line:
            raise ProtocolError("no agent configuration on standard input (start agents with patas)")
        return cls.from_line(line)

    @classmethod
    def from_line(cls, line: bytes) -> "AgentConfig":
        try:
            data = json.loads(line)
            keys = data.pop("keys")
            gpus = data.pop("gpus", None)
            return cls(**data, keys=CurveKeys(**keys) if keys else None, gpus=tuple(map(str, gpus)) if gpus is not None else None)
        except (ValueError, TypeError, KeyError) as error:
            raise ProtocolError(f"malformed agent configuration: {error}") from None
