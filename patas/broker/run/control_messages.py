"""The messages of a run's control channel (`channel`): what `patas status` and `patas nodes` ask a
run in progress, and its answers.

On the wire each is msgpack `[KIND, [fields...]]`; `channel` frames it with its length. A run
imports this module when its first request arrives, not when it starts: most runs are never
asked, and a run's start-up pays for every class it defines (see docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import Any, ClassVar

import msgpack

from patas.common.errors import ProtocolError


@dataclass(frozen=True)
class ControlMessage:
    KIND: ClassVar[str] = ""


@dataclass(frozen=True)
class StatusRequest(ControlMessage):
    KIND: ClassVar[str] = "status"
    experiment: str


@dataclass(frozen=True)
class StatusReply(ControlMessage):
    KIND: ClassVar[str] = "status-reply"
    status: list[Any]  # an ExperimentStatus as `dataclasses.astuple` gives it (see `status_from_wire`)


@dataclass(frozen=True)
class AddNodesRequest(ControlMessage):
    """Start agents on these nodes; each is [name ("" to be named by the run), hostname, user,
    port, private_key, workers, tags], as `patas.common.config.Node` holds them."""

    KIND: ClassVar[str] = "add-nodes"
    nodes: list[list[Any]]
    cluster: str  # the cluster they come from (the --cluster file's name), for the journal


@dataclass(frozen=True)
class AddNodesReply(ControlMessage):
    KIND: ClassVar[str] = "add-nodes-reply"
    added: list[str]  # one line per node that is ready
    failed: list[str]  # one line per node that is not, with the reason


@dataclass(frozen=True)
class RemoveNodeRequest(ControlMessage):
    KIND: ClassVar[str] = "remove-node"
    node: str
    drain: bool  # let its running tasks finish first


@dataclass(frozen=True)
class RemoveNodeReply(ControlMessage):
    KIND: ClassVar[str] = "remove-node-reply"
    message: str


@dataclass(frozen=True)
class Refusal(ControlMessage):
    """The run cannot do what was asked (or will not, for this peer): one line saying why."""

    KIND: ClassVar[str] = "refused"
    reason: str


_TYPES: dict[str, type[ControlMessage]] = {
    cls.KIND: cls for cls in (StatusRequest, StatusReply, AddNodesRequest, AddNodesReply, RemoveNodeRequest, RemoveNodeReply, Refusal)
}


def encode(message: ControlMessage) -> bytes:
    packed: bytes = msgpack.packb([message.KIND, [getattr(message, f.name) for f in fields(message)]])
    return packed


def decode(body: bytes) -> ControlMessage:
    try:
        kind, values = msgpack.unpackb(body, use_list=True)
        return _TYPES[kind](*values)
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as error:
        raise ProtocolError(f"malformed control message: {error!r}") from None


def status_to_wire(status: Any) -> list[Any]:
    return list(astuple(status))


def status_from_wire(values: list[Any]) -> Any:
    """The ExperimentStatus a StatusReply carries."""
    from patas.analysis.status import ExperimentStatus, FailureGroup, NodeStatus, RunningTask

    data = dict(zip((f.name for f in fields(ExperimentStatus)), values))
    data["running_tasks"] = tuple(RunningTask(*t) for t in data["running_tasks"])
    data["nodes"] = tuple(NodeStatus(*n) for n in data["nodes"])
    data["failures"] = tuple(FailureGroup(g[0], g[1], tuple(g[2])) for g in data["failures"])
    return ExperimentStatus(**data)
