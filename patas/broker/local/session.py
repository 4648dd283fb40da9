"""Agents on this machine: a child process of the coordinator, configured on its standard input.

A local agent's process is usually started ahead of the run (`patas.broker.local.early_start`):
Python's start and the agent's imports then overlap the coordinator's own, and the agent waits
on its stdin until `start_agent` writes its configuration.
"""

from __future__ import annotations

import collections
import os
import select
import subprocess
import threading

from patas.broker.local.early_start import take
from patas.common.agent_config import AgentConfig
from patas.common.config import Node

# How long an agent may take to exit after being told to, before it is killed.
STOP_TIMEOUT_S = 5.0
LOOPBACK = "127.0.0.1"
# The agent's last lines of stderr kept to say why it exited (it logs warnings there).
STDERR_TAIL_LINES = 20
# How long to wait, once the agent has exited, for the end of its stderr: a process it left
# behind may hold the pipe open, and must not hold up the run's end.
STDERR_END_TIMEOUT_S = 1.0


class LocalAgent:
    """An agent process on this machine."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        # Read all along, so that an agent that logs much never blocks on a full pipe; only the
        # tail is kept, for `failure`.
        self._stderr_tail: collections.deque[bytes] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._stderr_reader = threading.Thread(target=self._drain_stderr, name="agent-stderr", daemon=True)
        self._stderr_reader.start()

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            for line in self.process.stderr:
                self._stderr_tail.append(line)

    @property
    def pid(self) -> int:
        """The agent's process: the coordinator admits messages on its local endpoint from it only."""
        return self.process.pid

    def exit_code(self) -> int | None:
        return self.process.poll()

    def failure(self) -> str:
        self._stderr_reader.join(STDERR_END_TIMEOUT_S)  # the agent has exited: its stderr ends
        lines = [line.decode(errors="replace").strip() for line in self._stderr_tail]
        last = next((line for line in reversed(lines) if line), "no message")
        return f"local agent exited with status {self.process.returncode}: {last}"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # the agent's lifeline: it exits at end of file
        if not _exits_within(self.process, timeout_s):
            self.process.kill()
        self.process.wait()
        self._stderr_reader.join(STDERR_END_TIMEOUT_S)


def _exits_within(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether `process` exits within `timeout_s`, known the moment it does through its pidfd
    (`Popen.wait` with a timeout polls, sleeping up to 50 ms between looks)."""
    if process.poll() is not None:
        return True  # reaped: its pid may be another process's by now
    try:
        pidfd = os.pidfd_open(process.pid)  # a zombie's pidfd is readable at once
    except (AttributeError, OSError):  # Python before 3.9, Linux before 5.3
        try:
            process.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        return bool(select.select([pidfd], [], [], timeout_s)[0])
    finally:
        os.close(pidfd)


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
        process = take()
        assert process.stdin is not None
        process.stdin.write(config.to_line())
        process.stdin.flush()  # and keep it open: closing it tells the agent to stop
        return LocalAgent(process)

    def close(self) -> None:
        pass
