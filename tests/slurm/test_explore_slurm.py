"""`patas explore --slurm` against a real Slurm (tests/slurmcluster.py): jobs, nodes, their end."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.running import ENV, exactly_once, journal, processes_with
from tests.slurmcluster import NODES, SlurmCluster

AGENT_MARKER = "patas.agent --slurm"
RUN_TIMEOUT_S = 240


def _env(slurm: SlurmCluster) -> dict[str, str]:
    return {**ENV, "SLURM_CONF": str(slurm.conf)}


def _patas(slurm: SlurmCluster, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patas", *args], cwd=cwd, env=_env(slurm), capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S,
    )  # fmt: skip


def _start(slurm: SlurmCluster, cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "patas", *args], cwd=cwd, env=_env(slurm), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _explore(*more: str) -> list[str]:
    return ["explore", "-y", "--slurm", "--bind", "127.0.0.1", *more]


def _assert_nothing_left(slurm: SlurmCluster) -> None:
    assert slurm.jobs() == [], "jobs left in squeue after the sweep"
    assert processes_with(AGENT_MARKER) == [], "agent processes left after the sweep"


def _done_count(experiment: Path) -> int:
    return sum(1 for r in journal(experiment) if r["outcome"] == "done")


def test_one_job_of_three_nodes_spreads_the_sweep_with_every_result_once(quiet_slurm: SlurmCluster, tmp_path: Path) -> None:
    done = _patas(
        quiet_slurm, tmp_path,
        *_explore("--slurm-nodes", "3"), "--cmd", "sleep 0.3; echo {x} $SLURMD_NODENAME $SLURM_JOB_ID", "--va", "x", "0", "24", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    experiment = tmp_path / "pataslab" / "grid"
    outputs = {t: (experiment / str(t) / "stdout").read_text().split() for t in range(24)}
    exactly_once(experiment, {t: " ".join(words) + "\n" for t, words in outputs.items()})
    assert {words[0] for words in outputs.values()} == {str(t) for t in range(24)}
    assert {words[1] for words in outputs.values()} == set(NODES), "every node of the job ran tasks"
    assert len({words[2] for words in outputs.values()}) == 1, "one job"
    assert "waiting: Slurm job" in done.stderr  # its pending state was shown
    _assert_nothing_left(quiet_slurm)


def test_a_cancelled_job_is_replaced_and_the_sweep_completes_each_result_once(quiet_slurm: SlurmCluster, tmp_path: Path) -> None:
    tasks = 30
    run = _start(
        quiet_slurm, tmp_path,
        *_explore("--slurm-jobs", "3"), "--cmd", "sleep 0.5; echo {x}", "--va", "x", "0", str(tasks), "1",
    )  # fmt: skip
    experiment = tmp_path / "pataslab" / "grid"
    try:
        quiet_slurm.wait_for(lambda: _done_count(experiment) >= 4, what="the first tasks done")
        first_jobs = [job for job, state, _ in quiet_slurm.jobs() if state == "RUNNING"]
        victim = first_jobs[0]
        quiet_slurm.run("scancel", victim)
        stdout, stderr = run.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, stderr
    exactly_once(experiment, {t: f"{t}\n" for t in range(tasks)})
    # squeue may catch the job while its processes are still being killed (COMPLETING).
    assert re.search(rf"lost: Slurm job {victim} ended: (CANCELLED|COMPLETING)", stderr), stderr
    assert "starting a new agent (1 of 3)" in stderr
    replacement = int(stderr.split("starting a new agent")[1].split("waiting: Slurm job ")[1].split()[0])
    assert replacement > max(int(job) for job in first_jobs), "a new job was submitted"
    lost_line = next(line for line in stderr.splitlines() if f"Slurm job {victim} ended" in line)
    assert "silent" not in lost_line, "lost as soon as the job ended, not by the agent timeout"
    _assert_nothing_left(quiet_slurm)


def test_a_job_reaching_its_time_limit_is_replaced(quiet_slurm: SlurmCluster, tmp_path: Path) -> None:
    # Slurm's shortest time limit is a minute (and its controller checks limits every ~30 s):
    # tasks take a second while `slow` exists, so the sweep outlasts the first job; once that
    # job has ended TIMEOUT, the rest are instant and its replacement finishes the sweep.
    tasks = 200
    slow = tmp_path / "slow"
    slow.touch()
    run = _start(
        quiet_slurm, tmp_path,
        *_explore("--slurm-jobs", "1", "--time", "1"), "--cmd", f"[ -e {slow} ] && sleep 1; echo {{x}}",
        "--va", "x", "0", str(tasks), "1",
    )  # fmt: skip
    try:
        quiet_slurm.wait_for(lambda: "TIMEOUT" in quiet_slurm.run("squeue", "-h", "--states=all", "-o", "%T").stdout,
                             timeout_s=150, what="the job to reach its time limit")  # fmt: skip
        slow.unlink()
        stdout, stderr = run.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, stderr
    exactly_once(tmp_path / "pataslab" / "grid", {t: f"{t}\n" for t in range(tasks)})
    assert re.search(r"ended: (TIMEOUT|COMPLETING \(TimeLimit\))", stderr), stderr
    assert "starting a new agent (1 of 3)" in stderr
    _assert_nothing_left(quiet_slurm)


def test_a_bad_partition_is_one_line_with_slurms_message(quiet_slurm: SlurmCluster, tmp_path: Path) -> None:
    done = _patas(quiet_slurm, tmp_path, *_explore("--partition", "nope"), "--cmd", "true")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Slurm refused the job: sbatch: "), done.stderr
    assert "invalid partition" in lines[0].lower() and "--partition" in lines[0]
    assert not (tmp_path / "pataslab" / "grid" / "journal.jsonl").exists()
    _assert_nothing_left(quiet_slurm)


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="no sbatch here")
def test_a_machine_without_a_slurm_to_ask_is_told_so_not_to_check_its_partition(tmp_path: Path) -> None:
    # Real sbatch with a configuration it cannot use: what it says on a machine with no Slurm set up.
    (tmp_path / "slurm.conf").write_text("")
    env = {**ENV, "SLURM_CONF": str(tmp_path / "slurm.conf")}
    done = subprocess.run([sys.executable, "-m", "patas", *_explore(), "--cmd", "true"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)  # fmt: skip
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("Error: sbatch cannot reach Slurm: sbatch: ") and "Unable to process configuration file" in line, line
    assert line.endswith("(is Slurm set up here? `scontrol ping` says; SLURM_CONF names its configuration)")
    assert not (tmp_path / "pataslab").exists()


def test_the_library_submits_the_same_jobs(quiet_slurm: SlurmCluster, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import patas

    monkeypatch.setenv("SLURM_CONF", str(quiet_slurm.conf))
    # Tasks long enough (12 s of work for 2 slots) that the second job's agent joins before the end.
    result = patas.explore("sleep 1; echo {x} $SLURMD_NODENAME", {"x": range(12)}, lab=tmp_path / "lab", workdir=tmp_path,
                           slurm=patas.SlurmOptions(jobs=2), bind="127.0.0.1")  # fmt: skip
    assert result.ok and result.done == 12
    nodes = {(result.folder / str(t) / "stdout").read_text().split()[1] for t in range(12)}
    assert len(nodes) == 2, "two one-node jobs"
    _assert_nothing_left(quiet_slurm)


def test_the_gpus_slurm_grants_are_shared_out_so_that_no_two_running_tasks_share_one(quiet_slurm: SlurmCluster, tmp_path: Path) -> None:
    # The testbed's nodes have GPUS_PER_NODE fake GPUs each (device files, see tests/slurmcluster.py).
    done = _patas(
        quiet_slurm, tmp_path,
        *_explore("--slurm-nodes", "2", "--gpus-per-node", "2", "--gpus-per-task", "1"),
        "--cmd", "sleep 0.3; echo $SLURMD_NODENAME $CUDA_VISIBLE_DEVICES $PATAS_GPUS", "--va", "x", "0", "16", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    experiment = tmp_path / "pataslab" / "grid"
    records = {r["task_id"]: r for r in journal(experiment) if r["outcome"] == "done"}
    assert sorted(records) == list(range(16))
    held: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for task_id, record in records.items():
        node, cuda, patas_gpus = (experiment / str(task_id) / "stdout").read_text().split()
        assert cuda == patas_gpus and cuda in {"0", "1"}, (cuda, patas_gpus)
        held.setdefault((node, cuda), []).append((record["started_at"], record["ended_at"]))
    assert {gpu for _, gpu in held} == {"0", "1"} and len({node for node, _ in held}) == 2, held
    for spans in held.values():  # one GPU, one task at a time
        spans.sort()
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    _assert_nothing_left(quiet_slurm)


def test_two_gpus_per_task_make_one_worker_per_two_gpus(quiet_slurm: SlurmCluster, tmp_path: Path) -> None:
    done = _patas(
        quiet_slurm, tmp_path,
        *_explore("--slurm-nodes", "1", "--gpus-per-node", "2", "--gpus-per-task", "2"),
        "--cmd", "echo $CUDA_VISIBLE_DEVICES", "--va", "x", "0", "4", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    experiment = tmp_path / "pataslab" / "grid"
    assert {(experiment / str(t) / "stdout").read_text() for t in range(4)} == {"0,1\n"}
    assert {r["worker_in_lab"] for r in journal(experiment) if r["outcome"] == "done"} == {0}, "one worker"
    _assert_nothing_left(quiet_slurm)


def test_shipped_code_runs_on_the_jobs_nodes_from_its_snapshot(quiet_slurm: SlurmCluster, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"  # on a filesystem the job's nodes share with this machine, as patas is
    monkeypatch.setitem(ENV, "PATAS_CACHE", str(cache))
    code = tmp_path / "code"
    code.mkdir()
    (code / "task.sh").write_text('echo "$1 $SLURMD_NODENAME $PWD"\n')
    done = _patas(quiet_slurm, code, *_explore("--slurm-nodes", "2"), "--ship", ".", "--cmd", "bash task.sh {x}", "--va", "x", "0", "8", "1")
    assert done.returncode == 0, done.stderr
    experiment = code / "pataslab" / "grid"
    records = [r for r in journal(experiment) if r["outcome"] == "done"]
    (digest,) = {r["code"]["digest"] for r in records}
    snapshot = cache / "snapshots" / digest
    outputs = [(experiment / str(t) / "stdout").read_text().split() for t in range(8)]
    assert [int(x) for x, _, _ in outputs] == list(range(8))
    assert {folder for _, _, folder in outputs} == {str(snapshot)}, "every task ran in the snapshot"
    assert (snapshot / "task.sh").read_text() == (code / "task.sh").read_text()
    _assert_nothing_left(quiet_slurm)
