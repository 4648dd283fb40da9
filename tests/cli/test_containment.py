"""A sweep leaves nothing running: not at a task's end, its --timeout, Ctrl-C, nor when its agent
is killed, even for processes that left the task's process group (setsid, double fork)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from patas.agent import supervisor
from tests.running import children_running, journal, patas, processes_with, start_patas

PID = os.getpid()


def escaping(marker: str) -> str:
    """Shell text that starts two sleeps out of the command's process group."""
    return f"setsid sleep {marker} & ( ( setsid sleep {marker} & ) & );"


def wait_for(condition, what: str, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_sweep_whose_tasks_daemonise_leaves_nothing_running(tmp_path):
    marker = f"3020.{PID}"
    run = patas("explore", "--cmd", f"{escaping(marker)} echo {{i}}", "--va", "i", "0", "6", "1", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert processes_with(marker) == []


def test_timeout_kills_what_left_the_process_group(tmp_path):
    marker = f"3021.{PID}"
    command = f"{escaping(marker)} sleep 60 {{x}}"
    run = patas("explore", "--cmd", command, "--vl", "x", "1", "--timeout", "1", "--max-tries", "1", "-y", cwd=tmp_path)
    assert run.code == 3 and "timed out; giving up" in run.stderr
    assert processes_with(marker) == []


def test_ctrl_c_leaves_nothing_running(tmp_path):
    marker = f"3022.{PID}"
    process = start_patas("explore", "--cmd", f"{escaping(marker)} sleep 60 {{i}}", "--va", "i", "0", "4", "1", "-y", cwd=tmp_path)
    wait_for(lambda: len(processes_with(marker)) >= 4, "two tasks' escaped sleeps")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    wait_for(lambda: processes_with(marker) == [], "the escaped sleeps to be killed")


def test_a_killed_agent_takes_its_tasks_escaped_processes_with_it(tmp_path):
    marker = f"3023.{PID}"
    process = start_patas("explore", "--cmd", f"{escaping(marker)} sleep 1.{{i}}", "--va", "i", "0", "4", "1", "-y", cwd=tmp_path)
    wait_for(lambda: len(processes_with(marker)) >= 4, "two tasks' escaped sleeps")
    first = set(processes_with(marker))
    (agent,) = children_running(process.pid, "patas.agent")
    os.kill(agent, signal.SIGKILL)
    wait_for(lambda: not first & set(processes_with(marker)), "the dead agent's supervisors to kill them")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert len([r for r in journal(tmp_path / "pataslab/grid") if r["outcome"] == "done"]) == 4
    assert processes_with(marker) == []


def test_a_killed_supervisor_leaves_its_task_processes_to_the_agent_which_kills_them(tmp_path):
    marker = f"3024.{PID}"
    process = start_patas("explore", "--cmd", f"{escaping(marker)} sleep 2.{{i}}", "--va", "i", "0", "2", "1", "-y", cwd=tmp_path)
    wait_for(lambda: len(processes_with(marker)) >= 4, "two tasks' escaped sleeps")
    (agent,) = children_running(process.pid, "patas.agent")
    supervisors = children_running(agent, "patas.agent")
    assert [Path(f"/proc/{pid}/comm").read_text().strip() for pid in supervisors] == [supervisor.NAME] * 2
    first = set(processes_with(marker))
    os.kill(supervisors[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "killed by signal 9; will retry" in stderr  # that attempt failed, and its task ran again
    assert not first & set(processes_with(marker))
