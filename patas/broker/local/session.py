"""Agents on this machine: a child process of the coordinator, configured on its standard input.

A local agent's process may be started before the run knows its configuration
(`starting_early`): Python's start and the agent's imports then overlap the coordinator's own
planning and imports, and the agent waits on its stdin until `start_agent` writes the line.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

import patas
from patas.common.agent_config import AgentConfig
from patas.common.config import Node

# How long an agent may take to exit after being told to, before it is killed.
STOP_TIMEOUT_S = 5.0
LOOPBACK = "127.0.0.1"
# The agent runs without `site` (-S: no .pth files to execute, ~40 ms here), on the import path
# this process resolved, with patas's own folder first (an editable install's finder is a .pth).
# Passed as arguments, not PYTHONPATH, so that the tasks' environment is the user's.
AGENT_BOOT = "import sys; sys.path[:] = sys.argv[1:]; from patas.agent.__main__ import main; sys.exit(main([]))"

# Agent processes started ahead, waiting for their configuration (see `starting_early`).
_waiting: list[subprocess.Popen[bytes]] = []


def _spawn() -> subprocess.Popen[bytes]:
    """A local agent process, waiting for its configuration on its stdin."""
    import_path = [os.path.abspath(p) for p in (os.path.dirname(os.path.dirname(patas.__file__)), *sys.path) if p]
    return subprocess.Popen(
        [sys.executable, "-S", "-c", AGENT_BOOT, *import_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@contextmanager
def starting_early(count: int) -> Iterator[None]:
    """Start `count` local agent processes now, for the run's local sessions to configure; those
    left unused when the block ends (nothing to run, a refusal, an error) are killed: they hold
    nothing yet, and waiting for them to finish importing would delay the exit."""
    _waiting.extend(_spawn() for _ in range(count))
    try:
        yield
    finally:
        while _waiting:
            unused = _waiting.pop()
            unused.kill()
            unused.communicate()  # reaps it and closes its pipes


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
        if not _exits_within(self.process, timeout_s):
            self.process.kill()
        self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


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
        process = _waiting.pop() if _waiting else _spawn()
        assert process.stdin is not None
        process.stdin.write(config.to_line())
        process.stdin.flush()  # and keep it open: closing it tells the agent to stop
        return LocalAgent(process)

    def close(self) -> None:
        pass
