"""What an agent is told when it starts: where the broker is, who it is, and its keys.

The coordinator writes this as one JSON line on the agent's standard input — over the SSH channel
for a remote node — so the secret key never appears on a command line (visible in `ps`) or in a
file. An agent started this way then keeps reading its standard input: end of file means the
coordinator or its SSH connection is gone, and the agent kills its tasks and exits.
"""

from __future__ import annotations

import dataclasses
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
        except ValueError as error:
            raise ProtocolError(f"not an agent configuration: not JSON ({error})") from None
        if not isinstance(data, dict):
            raise ProtocolError("not an agent configuration: not a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ProtocolError(f"not an agent configuration: unknown key '{unknown[0]}'")
        # `keys` is written even when null (no CURVE): a line without it is not one of ours.
        missing = [name for name, f in fields.items() if name not in data and (f.default is dataclasses.MISSING or name == "keys")]
        if missing:
            raise ProtocolError(f"not an agent configuration: no '{missing[0]}'")
        for name, value in data.items():
            kind = _SIMPLE_TYPES.get(str(fields[name].type))
            if kind is not None and not (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))):
                raise ProtocolError(f"not an agent configuration: '{name}' must be {_TYPE_WORDS[kind]}, got {json.dumps(value)}")
        keys = data.pop("keys")
        key_names = [f.name for f in dataclasses.fields(CurveKeys)]
        if keys is not None and not (isinstance(keys, dict) and sorted(keys) == sorted(key_names)):
            raise ProtocolError(f"not an agent configuration: 'keys' must be null or hold {', '.join(key_names)}")
        gpus = data.pop("gpus", None)
        if gpus is not None and not isinstance(gpus, list):
            raise ProtocolError("not an agent configuration: 'gpus' must be null or a list")
        return cls(**data, keys=CurveKeys(**keys) if keys else None, gpus=tuple(map(str, gpus)) if gpus is not None else None)


# The types of the fields checked as they are read (the others, keys and gpus, by their shape).
_SIMPLE_TYPES: dict[str, type] = {"str": str, "int": int, "bool": bool}
_TYPE_WORDS = {str: "a string", int: "an integer", bool: "true or false"}
