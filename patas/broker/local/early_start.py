"""Local agent processes started ahead of need.

A local agent's Python takes about as long to start and import as the coordinator takes to
import and plan, so `patas explore` starts one before it even parses its options: the two
overlap on two cores. The process waits on its stdin for its configuration (`take` hands it to
a `LocalSession`); the options may then say how many the run needs (`starting_early`), and
those nobody takes are ended.

This module is imported first thing by the CLI, so it imports only what the spawn itself needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

import patas

# The agent runs without `site` (-S: no .pth files to execute, ~40 ms here), on the import path
# this process resolved, with patas's own folder first (an editable install's finder is a .pth).
# Passed as arguments, not PYTHONPATH, so that the tasks' environment is the user's.
AGENT_BOOT = "import sys; sys.path[:] = sys.argv[1:]; from patas.agent.__main__ import exit_now, main; exit_now(main([]))"

# Agent processes started ahead, waiting for their configuration.
_waiting: list[subprocess.Popen[bytes]] = []


def spawn() -> subprocess.Popen[bytes]:
    """A local agent process, waiting for its configuration on its stdin. Its stderr is a pipe
    that `patas.broker.local.session` drains once the agent is given work."""
    import_path = [os.path.abspath(p) for p in (os.path.dirname(os.path.dirname(patas.__file__)), *sys.path) if p]
    return subprocess.Popen(
        [sys.executable, "-S", "-c", AGENT_BOOT, *import_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def take() -> subprocess.Popen[bytes]:
    """An agent process for a session: one started ahead if any waits, else a new one."""
    return _waiting.pop() if _waiting else spawn()


@contextmanager
def starting_early(count: int) -> Iterator[None]:
    """Have `count` local agent processes waiting (starting more, ending extras) for the run's
    local sessions to take; those still waiting when the block ends (nothing to run, a refusal,
    an error) are ended: they hold nothing yet, and waiting for them to finish importing would
    delay the exit."""
    while len(_waiting) > count:
        _end(_waiting.pop())
    _waiting.extend(spawn() for _ in range(count - len(_waiting)))
    try:
        yield
    finally:
        while _waiting:
            _end(_waiting.pop())


def _end(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.communicate()  # reaps it and closes its pipes
