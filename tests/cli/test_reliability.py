"""Faults injected into real runs: killed and frozen agents, a killed coordinator, a full disk,
tasks that crash. After each, every task is committed exactly once with exactly its output."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.running import children_running, done_ids, exactly_once, journal, patas, processes_with, start_patas


def wait_for(condition, timeout_s: float = 30.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def agents_in(folder: Path) -> list[int]:
    """This test's agents: other tests on the machine run agents of their own elsewhere."""
    found = []
    for pid in processes_with("patas.agent"):
        try:
            if Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(folder):
                found.append(pid)
        except OSError:
            continue
    return found


def sweep(marker: str, count: int, pause: str = "0.05") -> list[str]:
    return ["explore", "--cmd", f"sleep {pause}{marker}; echo task {{i}}", "--va", "i", "0", str(count), "1", "-y"]


def expected(count: int) -> dict[int, str]:
    return {i: f"task {i}\n" for i in range(count)}


def test_a_killed_agent_is_replaced_and_its_tasks_rerun(tmp_path):
    marker = "%d1" % os.getpid()
    process = start_patas(*sweep(marker, 40, "0.2"), cwd=tmp_path)
    lab = tmp_path / "pataslab/grid"
    wait_for(lambda: len(journal(lab)) >= 5, what="some tasks to finish")
    (agent,) = children_running(process.pid, "patas.agent")
    os.kill(agent, signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "starting a new agent (1 of 3)" in stderr
    exactly_once(lab, expected(40))
    assert processes_with(marker) == []


def test_a_frozen_agent_loses_its_tasks_to_another_and_is_refused_when_it_wakes(tmp_path):
    marker = "%d2" % os.getpid()
    args = sweep(marker, 30, "0.3") + ["--node", "localhost", "1", "--node", "127.0.0.1", "1", "--agent-timeout", "2"]
    process = start_patas(*args, cwd=tmp_path)
    lab = tmp_path / "pataslab/grid"
    wait_for(lambda: len(journal(lab)) >= 2, what="some tasks to finish")
    frozen = children_running(process.pid, "patas.agent")[0]
    os.kill(frozen, signal.SIGSTOP)
    wait_for(lambda: len(journal(lab)) >= 12, what="the other agent to carry on", timeout_s=60)
    os.kill(frozen, signal.SIGCONT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "lost: silent for 2 s" in stderr
    exactly_once(lab, expected(30))
    wait_for(lambda: not Path(f"/proc/{frozen}").exists() or "Z" in Path(f"/proc/{frozen}/stat").read_text().split(")")[1][:3],
             what="the woken agent to exit")  # fmt: skip
    assert processes_with(marker) == []


def test_a_node_whose_tasks_keep_failing_is_taken_out_of_rotation(tmp_path):
    command = 'test "$PATAS_NODE_NAME" != node1 && echo ok {i}'
    run = patas("explore", "--cmd", command, "--va", "i", "0", "30", "1", "--max-tries", "10",
                "--node", "localhost", "1", "--node", "127.0.0.1", "1", "-y", cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run.stderr
    assert "node1: lost: taken out of rotation: its recent tasks all failed while they succeed on other nodes" in run.stderr
    assert done_ids(tmp_path / "pataslab/grid") == list(range(30))


def test_the_coordinator_can_be_killed_at_any_moment_and_resumed(tmp_path):
    marker = "%d3" % os.getpid()
    rng = random.Random(7)
    lab = tmp_path / "pataslab/grid"
    for _ in range(5):
        process = start_patas(*sweep(marker, 120, "0.01"), "--no-sync", cwd=tmp_path)
        time.sleep(rng.uniform(0.3, 1.2))
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        wait_for(lambda: processes_with(marker) == [] and agents_in(tmp_path) == [], what="the agent to exit")
    final = patas(*sweep(marker, 120, "0.01"), cwd=tmp_path)
    assert final.code == 0, final.stderr
    exactly_once(lab, expected(120))


def test_kill_between_commit_steps_never_counts_half_an_output(tmp_path):
    # A journal line cut short and an output renamed without its record, as a crash leaves them.
    run = patas(*sweep("", 4), cwd=tmp_path)
    assert run.code == 0
    lab = tmp_path / "pataslab/grid"
    lines = (lab / "journal.jsonl").read_text().splitlines(keepends=True)
    (lab / "journal.jsonl").write_text("".join(lines[:2]) + lines[2][:40])  # task of line 3 torn
    torn = [int(line.split('"task_id":')[1].split(",")[0]) for line in lines[2:]]
    (lab / str(torn[0]) / "stdout").write_text("half")
    again = patas(*sweep("", 4), cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert "2 done, 2 to run" in again.stderr
    exactly_once(lab, expected(4))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_a_clear_error_and_nothing_partial_counts(tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    try:
        run = patas("explore", "--cmd", "head -c 300000 /dev/zero; echo {i}", "--va", "i", "0", "30", "1",
                    "-o", str(disk / "lab"), "-y", cwd=tmp_path)  # fmt: skip
        assert run.code == 1
        assert "No space left on device (free some space, or use -o to write elsewhere)" in run.stderr
        assert run.stderr.count("\n") <= 6 and "Traceback" not in run.stderr
        lab = disk / "lab/grid"
        for record in journal(lab):
            if record["outcome"] == "done":
                assert (lab / str(record["task_id"]) / "stdout").stat().st_size == 300_000 + len(f"{record['task_id']}\n")
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_tasks_that_crash_or_are_killed_are_failures_with_a_reason(tmp_path):
    run = patas("explore", "--cmd", "echo before; kill -{sig} $$", "--vl", "sig", "9", "15", "--max-tries", "1", "-y", cwd=tmp_path)
    assert run.code == 3
    assert "attempt 1/1 on node0: killed by signal 9; giving up" in run.stderr
    assert "attempt 1/1 on node0: killed by signal 15; giving up" in run.stderr
    assert (tmp_path / "pataslab/grid/0/attempt-1.stdout").read_text() == "before\n"


def test_a_coordinator_killed_between_group_commits_counts_only_whole_outputs(tmp_path):
    # Short tasks, synced: commits go in groups (see committer). After each SIGKILL, at a random
    # moment, every task the journal says is done has exactly its output in place.
    marker = "%d4" % os.getpid()
    rng = random.Random(11)
    lab = tmp_path / "pataslab/grid"
    tasks = expected(300)
    for _ in range(4):
        process = start_patas(*sweep(marker, 300, "0.0"), cwd=tmp_path)
        wait_for(lambda: (lab / "journal.jsonl").exists(), what="the run to start")
        time.sleep(rng.uniform(0.2, 1.0))
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        wait_for(lambda: processes_with(marker) == [] and agents_in(tmp_path) == [], what="the agent to exit")
        for record in journal(lab):
            if record["outcome"] == "done":
                assert (lab / str(record["task_id"]) / "stdout").read_text() == tasks[record["task_id"]]
    final = patas(*sweep(marker, 300, "0.0"), cwd=tmp_path)
    assert final.code == 0, final.stderr
    exactly_once(lab, tasks)
