"""Starting agents: a session per node, opened before the run, that starts the node's agent.

The coordinator never special-cases `localhost`: a local node has a `LocalSession` that starts
an agent process here, a remote node an `SSHSession` (patas.broker.ssh.session) that starts one
over SSH. Both hand the agent its configuration on standard input and keep that pipe open: when
the coordinator goes away, the agent sees end of file and exits.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Protocol

from patas.broker.local.session import STOP_TIMEOUT_S, LocalSession
from patas.common.agent_config import AgentConfig
from patas.common.config import Node
from patas.common.errors import PatasError

# Nodes are connected to in parallel, at most this many at once.
MAX_PARALLEL_CONNECTS = 32


class AgentHandle(Protocol):
    def exit_code(self) -> int | None:
        """The agent's exit status once it has exited, else None."""

    def failure(self) -> str:
        """Why the agent stopped, in one line, once it has exited."""

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Let the agent go (it was told to shut down), killing it after `timeout_s`."""

    # A launcher whose agents wait in a batch queue (Slurm) also gives its handles
    # `queue_state() -> str | None`: the queue's word for a job not yet running (e.g. "job 12
    # PENDING (Resources)"), None once it runs. The coordinator shows it, and counts the start
    # timeout only from when the job runs.


class NodeSession(Protocol):
    node: Node
    slots: int  # tasks the node runs at once: its `workers`, else its core count
    listen_host: str  # the coordinator address the broker must listen on for this node

    def agent_endpoint(self, broker_port: int) -> str:
        """The address this node's agent connects to, e.g. tcp://10.0.0.1:5555."""

    def start_agent(self, config: AgentConfig) -> AgentHandle: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class NodeFailure:
    node: Node
    reason: str

    def __str__(self) -> str:
        return f"{self.node.name}: {self.reason}"


def open_sessions(
    nodes: list[Node], open_remote: Callable[[Node], NodeSession]
) -> tuple[list[NodeSession | None], list[NodeFailure]]:
    """A session per node, opened in parallel; None (and a failure) where a node cannot be used."""

    def open_one(node: Node) -> NodeSession | NodeFailure:
        try:
            return LocalSession(node) if node.is_local else open_remote(node)
        except PatasError as error:
            return NodeFailure(node, str(error))

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_CONNECTS, max(1, len(nodes)))) as pool:
        outcomes = list(pool.map(open_one, nodes))
    sessions = [o if not isinstance(o, NodeFailure) else None for o in outcomes]
    return sessions, [o for o in outcomes if isinstance(o, NodeFailure)]
