"""Starting agents: the coordinator asks a launcher for an agent on a node and gets a handle.

The scheduler never special-cases `localhost`: a local node gets an agent process started by
`LocalLauncher`, a remote one an agent started over SSH by another launcher, and both speak to
the broker the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Protocol

from patas.common.config import Node

# How long an agent may take to exit after being told to, before it is killed.
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class AgentRequest:
    """What a launcher needs to start one agent."""

    node: Node
    agent_id: str
    broker_address: str
    slots: int


class AgentHandle(Protocol):
    request: AgentRequest

    def exit_code(self) -> int | None:
        """The agent's exit status once it has exited, else None."""

    def failure(self) -> str:
        """Why the agent stopped, in one line, once it has exited abnormally."""

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Wait for the agent to exit (it was told to), killing it after `timeout_s`."""


class Launcher(Protocol):
    def slots(self, node: Node) -> int:
        """How many tasks the node runs at once: its `workers`, else its core count."""

    def start(self, request: AgentRequest) -> AgentHandle:
        ...


class LocalAgent:
    """An agent process on this machine."""

    def __init__(self, request: AgentRequest, process: subprocess.Popen[bytes]) -> None:
        self.request = request
        self.process = process

    def exit_code(self) -> int | None:
        return self.process.poll()

    def failure(self) -> str:
        assert self.process.stderr is not None
        lines = self.process.stderr.read().decode(errors="replace").strip().splitlines()
        last = lines[-1] if lines else "no message"
        return f"local agent exited with status {self.process.returncode}: {last}"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


class LocalLauncher:
    def slots(self, node: Node) -> int:
        return node.workers or os.cpu_count() or 1

    def start(self, request: AgentRequest) -> LocalAgent:
        command = [
            sys.executable,
            "-m",
            "patas.agent",
            "--broker",
            request.broker_address,
            "--id",
            request.agent_id,
            "--slots",
            str(request.slots),
        ]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return LocalAgent(request, process)
