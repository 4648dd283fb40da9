"""Agents on this machine: a child process of the coordinator, configured on its standard input."""

from __future__ import annotations

import os
import subprocess
import sys

from patas.common.agent_config import AgentConfig
from patas.common.config import Node

# How long an agent may take to exit after being told to, before it is killed.
STOP_TIMEOUT_S = 5.0
LOOPBACK = "127.0.0.1"


class LocalAgent:
    """An agent process on this machine."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @property
    def pid(self) -> int:
        """The agent's process: the coordinator admits messages on its local endpoint from it only."""
        return self.process.pid

    def exit_code(self) -> int | None:
        return self.process.poll()

    def failure(self) -> str:
        assert self.process.stderr is not None
        lines = self.process.stderr.read().decode(errors="replace").strip().splitlines()
        last = lines[-1] if lines else "no message"
        return f"local agent exited with status {self.process.returncode}: {last}"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # the agent's lifeline: it exits at end of file
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


class LocalSession:
    listen_host = LOOPBACK
    # Its agents are this coordinator's children: they connect over its private ipc endpoint
    # (without CURVE) and their tasks write stdout straight into the lab (patas.broker.run.outputs).
    shares_lab = True

    def __init__(self, node: Node) -> None:
        self.node = node
        self.slots = node.default_workers(os.cpu_count() or 1)

    def agent_endpoint(self, broker_port: int) -> str:
        return f"tcp://{LOOPBACK}:{broker_port}"

    def start_agent(self, config: AgentConfig) -> LocalAgent:
        process = subprocess.Popen(
            [sys.executable, "-m", "patas.agent"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert process.stdin is not None
        process.stdin.write(config.to_line())
        process.stdin.flush()  # and keep it open: closing it tells the agent to stop
        return LocalAgent(process)

    def close(self) -> None:
        pass
