"""Local agents started early: while the run plans, the agent's process gets through Python's
start and its imports, then waits for its configuration."""

from __future__ import annotations

import subprocess
import sys

import pytest

from patas.broker.local import early_start as local
from patas.broker.local.session import LocalAgent
from patas.broker.run.exploration import prepare
from patas.common.config import Cluster, Node, experiment_from_flags
from patas.common.variables import list_variable
from tests.broker.test_coordinator import Recorder

# Prints the task's ancestors, parent first, up to init.
ANCESTORS = ": {x}; p=$PPID; while [ $p -gt 1 ]; do echo $p; p=$(cut -d' ' -f4 /proc/$p/stat); done"


def _waiting_pids() -> list[int]:
    return [process.pid for process in local._waiting]


def test_the_agent_started_early_is_the_one_that_runs_the_tasks(tmp_path):
    experiment = experiment_from_flags("early", [ANCESTORS], [list_variable("x", ["1"], "t")], 1, 1, str(tmp_path), None)
    with local.starting_early(1):
        [early] = _waiting_pids()
        assert local._waiting[0].args[1] == "-S"  # without site: no .pth file runs in the agent
        with prepare([experiment], [Cluster("c", (Node("n0", "localhost", workers=1),))], tmp_path / "lab") as exploration:
            result = exploration.run(Recorder())
        assert _waiting_pids() == []
    assert result.counts.done == 1
    ancestors = [int(line) for line in (tmp_path / "lab" / "early" / "0" / "stdout").read_text().split()]
    assert early in ancestors


def test_agents_started_early_and_never_used_are_ended_with_the_block(tmp_path):
    with pytest.raises(RuntimeError):
        with local.starting_early(2):
            processes = list(local._waiting)
            assert len(processes) == 2 and all(p.poll() is None for p in processes)
            raise RuntimeError("the run was refused")
    assert local._waiting == [] and all(p.returncode is not None for p in processes)
    assert all(p.stdin is not None and p.stdin.closed for p in processes)


def test_without_an_early_agent_a_session_starts_its_own(tmp_path):
    experiment = experiment_from_flags("late", ["echo {x}"], [list_variable("x", ["1", "2"], "t")], 1, 1, str(tmp_path), None)
    with prepare([experiment], [Cluster("c", (Node("n0", "localhost", workers=2),))], tmp_path / "lab") as exploration:
        result = exploration.run(Recorder())
    assert result.counts.done == 2
    assert (tmp_path / "lab" / "late" / "1" / "stdout").read_text() == "2\n"



def test_an_agent_that_logs_more_than_a_pipe_holds_never_blocks(tmp_path):
    # An agent process that writes 1 MiB to stderr (a pipe holds 64 KiB), then waits for its
    # lifeline to close: unread, its write would block it forever and stop() would have to kill it.
    chatty = "import sys; sys.stderr.write('x' * (1 << 20) + '\\nlast words\\n'); sys.stderr.flush(); sys.stdin.read(); sys.exit(3)"
    process = subprocess.Popen([sys.executable, "-c", chatty], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    agent = LocalAgent(process)
    agent.stop(timeout_s=30)
    assert process.returncode == 3  # it exited by itself, not killed
    assert agent.failure() == "local agent exited with status 3: last words"
