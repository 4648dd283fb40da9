"""The wire protocol between the broker (coordinator) and agents.

Every message is a list of ZeroMQ frames: `[kind, header, *payload]`. `kind` is a short byte
string naming the message type, `header` is the message's fields packed with msgpack (as a list,
in field order), and `payload` carries raw bytes (task output) in frames of their own, so large
chunks are never copied through msgpack. The broker's ROUTER socket adds the agent's identity
frame in front; the transport strips it.

An agent says `Hello` first; the broker answers `Welcome` or `Refused` (for example a different
`PROTOCOL_VERSION`). Any message counts as a heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

import msgpack

from patas.common.errors import ProtocolError

PROTOCOL_VERSION = 2

# The largest frame any patas socket accepts (libzmq drops a peer that announces a larger one).
# The largest legitimate frames are an Assign's header, which carries a task's commands and
# environment, and output payloads. One exec on Linux takes at most 6 MiB of arguments and
# environment (3/4 of the 8 MiB stack cap), so 16 MiB holds a task whose environment and commands
# are each at that limit, with room to spare; the agent sends output in chunks of 256 KiB and
# splits whatever it holds at a task's end into such chunks. `encode` refuses anything larger,
# so a message that could not arrive fails at its sender with a reason, never on the wire.
MAX_FRAME_BYTES = 16 * 1024 * 1024
# A message relayed by a pool's daemon carries the daemon's own lease number, which may take up
# to 8 bytes more than the run's; what a run or an agent sends leaves room for that.
RELAY_HEADROOM_BYTES = 1024

# Streams of a task's output, as numbers on the wire.
STDOUT, STDERR = 0, 1


class Message:
    """The base of every message type, each a frozen dataclass. The base itself has no fields,
    so it is a plain class: a dataclass costs ~0.6 ms to build, in every process that imports it."""

    KIND: ClassVar[bytes] = b""
    # How many raw payload frames follow the header (their field names, in order).
    PAYLOAD: ClassVar[tuple[str, ...]] = ()


# --- agent → broker -------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello(Message):
    """An agent introduces itself and how many tasks it can run at once."""

    KIND: ClassVar[bytes] = b"HELLO"
    protocol_version: int
    agent_id: str
    hostname: str
    slots: int
    pid: int


@dataclass(frozen=True)
class Output(Message):
    """A chunk of a running task's stdout or stderr."""

    KIND: ClassVar[bytes] = b"OUT"
    PAYLOAD: ClassVar[tuple[str, ...]] = ("data",)
    lease: int
    stream: int
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class TaskFile(Message):
    """A chunk of a file a finished task wrote in its folder (see patas.common.collected_files).

    A task's files come one after the other, each in order from offset 0, the last chunk of each
    with `eof`, all before the task's `Finished`. `path` is relative to the task's folder, as
    bytes (a file name need not be UTF-8). Its data counts against the output window."""

    KIND: ClassVar[bytes] = b"FILE"
    PAYLOAD: ClassVar[tuple[str, ...]] = ("data",)
    lease: int
    path: bytes
    offset: int
    eof: bool
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Finished(Message):
    """A task ended; carries its last buffered output so a short task costs one message."""

    KIND: ClassVar[bytes] = b"END"
    PAYLOAD: ClassVar[tuple[str, ...]] = ("stdout", "stderr")
    lease: int
    slot: int  # which of the agent's workers ran it (0-based)
    exit_code: int | None  # None when patas could not start the command (see `error`)
    started_at: float
    ended_at: float
    timed_out: bool
    error: str
    stdout: bytes = field(repr=False)
    stderr: bytes = field(repr=False)
    files: int = 0  # how many TaskFile files were sent before this message


@dataclass(frozen=True)
class Heartbeat(Message):
    KIND: ClassVar[bytes] = b"BEAT"


# --- broker → agent -------------------------------------------------------------------------


@dataclass(frozen=True)
class Welcome(Message):
    """The broker accepts the agent. Its workers are numbered from the given offsets in the lab
    and in the cluster (for the PATAS_WORKER_IN_* variables)."""

    KIND: ClassVar[bytes] = b"WELCOME"
    heartbeat_interval_s: float
    broker_timeout_s: float
    output_window_bytes: int
    first_worker_in_lab: int
    first_worker_in_cluster: int


@dataclass(frozen=True)
class Refused(Message):
    KIND: ClassVar[bytes] = b"REFUSED"
    reason: str


@dataclass(frozen=True)
class Assign(Message):
    """Run a task: its commands one after the other, in `workdir`, with `env` added.

    The agent queues it until one of its slots is free."""

    KIND: ClassVar[bytes] = b"TASK"
    lease: int
    commands: list[str]
    workdir: str
    env: dict[str, str]
    timeout_s: float | None
    # Globs of the files to send back from the task's folder (none: nothing), and their limit.
    collect: list[str] = field(default_factory=list)
    collect_limit_bytes: int = 0
    # For an agent the coordinator started on its own machine: the file the task's stdout is,
    # written straight into, never streamed ("": stream it). Its stderr streams either way.
    stdout_path: str = ""


@dataclass(frozen=True)
class Cancel(Message):
    """Kill a task's process group (its lease was given to another agent, or the run stops)."""

    KIND: ClassVar[bytes] = b"CANCEL"
    lease: int


@dataclass(frozen=True)
class Credit(Message):
    """The broker wrote `bytes` of an agent's output to disk; the agent may send that much more."""

    KIND: ClassVar[bytes] = b"CREDIT"
    bytes: int


@dataclass(frozen=True)
class Shutdown(Message):
    """Kill every task and exit."""

    KIND: ClassVar[bytes] = b"BYE"
    reason: str


@dataclass(frozen=True)
class Reintroduce(Message):
    """The broker does not know this agent (it restarted): drop all work and say hello again."""

    KIND: ClassVar[bytes] = b"WHO"


_TYPES: dict[bytes, type[Message]] = {}
_HEADER_FIELDS: dict[type[Message], tuple[str, ...]] = {}
_DESCRIPTION: dict[type[Message], str] = {Assign: "its commands and environment take"}
_FIX: dict[type[Message], str] = {Assign: " (pass large values in files rather than in variables or commands)"}


def register(*classes: type[Message]) -> None:
    """Let `encode` and `decode` carry these message types. The messages between runs and agents
    are registered here; a pool's control socket adds its own (patas.broker.pools.messages), so
    that runs and agents never build classes they do not use."""
    for cls in classes:
        if _TYPES.setdefault(cls.KIND, cls) is not cls:
            raise ValueError(f"{cls.__name__}: kind {cls.KIND!r} is {_TYPES[cls.KIND].__name__}'s")
        _HEADER_FIELDS[cls] = tuple(f.name for f in fields(cls) if f.name not in cls.PAYLOAD)


register(Hello, Output, TaskFile, Finished, Heartbeat, Welcome, Refused, Assign, Cancel, Credit, Shutdown, Reintroduce)


class MessageTooLarge(ProtocolError):
    """A message has a frame larger than any patas socket accepts."""


def encode(message: Message, relayed: bool = False) -> list[bytes]:
    """The frames of a message; raises MessageTooLarge if a frame would not fit in
    MAX_FRAME_BYTES (`relayed`) or would leave no RELAY_HEADROOM_BYTES (otherwise)."""
    cls = type(message)
    header = msgpack.packb([getattr(message, name) for name in _HEADER_FIELDS[cls]])
    frames = [cls.KIND, header, *(getattr(message, name) for name in cls.PAYLOAD)]
    largest = max(len(frame) for frame in frames)
    if largest > MAX_FRAME_BYTES - (0 if relayed else RELAY_HEADROOM_BYTES):
        raise MessageTooLarge(
            f"{_DESCRIPTION.get(cls, f'a {cls.__name__} message takes')} {largest / 2**20:.1f} MiB, more than the"
            f" {MAX_FRAME_BYTES // 2**20} MiB a message may carry{_FIX.get(cls, '')}"
        )
    return frames


def decode(frames: list[bytes]) -> Message:
    """The message in `frames`; raises ProtocolError for anything malformed."""
    if len(frames) < 2:
        raise ProtocolError(f"malformed message: {len(frames)} frame(s)")
    cls = _TYPES.get(bytes(frames[0]))
    if cls is None:
        raise ProtocolError(f"unknown message type {bytes(frames[0])[:20]!r}")
    payload = frames[2:]
    if len(payload) != len(cls.PAYLOAD):
        raise ProtocolError(f"{cls.__name__}: expected {len(cls.PAYLOAD)} payload frame(s), got {len(payload)}")
    try:
        values = msgpack.unpackb(frames[1], use_list=True)
        names = _HEADER_FIELDS[cls]
        if type(values) is not list or len(values) > len(names):
            raise ValueError(f"expected at most {len(names)} header fields")
        # By name: payload fields come last on the wire, not always last in the dataclass.
        return cls(**dict(zip(names, values)), **{name: bytes(p) for name, p in zip(cls.PAYLOAD, payload)})
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise ProtocolError(f"malformed {cls.__name__}: {error}") from None
