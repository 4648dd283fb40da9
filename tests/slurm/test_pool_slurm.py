"""`patas pool up --slurm` against a real Slurm: agents of one job, each its own identity; a
cancelled job's agents lost at once; a resubmitted job's agents take over a running sweep."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.running import exactly_once, journal, processes_with
from tests.slurm.test_explore_slurm import AGENT_MARKER, RUN_TIMEOUT_S, _env
from tests.slurmcluster import SlurmCluster

POOL = "slurmpool"


@pytest.fixture
def pool_env(quiet_slurm: SlurmCluster, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {**_env(quiet_slurm), "PATAS_POOLS": str(tmp_path / "pools")}
    yield env
    subprocess.run([sys.executable, "-m", "patas", "pool", "down", "--name", POOL], env=env, capture_output=True, timeout=60)
    quiet_slurm.wait_for(lambda: not quiet_slurm.jobs(), what="the pool's jobs to end")
    assert processes_with(AGENT_MARKER) == []


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "patas", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)  # fmt: skip


def _up(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run(env, cwd, "pool", "up", "--name", POOL, "--slurm", "--slurm-nodes", "2", "--bind", "127.0.0.1")


def test_a_job_of_two_nodes_fills_the_pool_with_two_agents_of_their_own(quiet_slurm, pool_env, tmp_path: Path) -> None:
    up = _up(pool_env, tmp_path)
    assert up.returncode == 0 and "2/2 agents ready" in up.stderr, up.stderr
    status = _run(pool_env, tmp_path, "pool", "status", "--name", POOL).stdout
    assert re.search(r"slurm0 .* ready", status) and re.search(r"slurm1 .* ready", status), status
    done = _run(pool_env, tmp_path, "explore", "-y", "--pool", POOL, "--cmd", "sleep 0.2; echo {i} $SLURMD_NODENAME",
                "--va", "i", "0", "20", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lab = tmp_path / "pataslab" / "grid"
    outputs = {i: (lab / str(i) / "stdout").read_text() for i in range(20)}
    exactly_once(lab, outputs)
    assert len({text.split()[1] for text in outputs.values()}) == 2, "both nodes of the job served the sweep"


def test_the_pools_only_job_cancelled_and_resubmitted_mid_run_the_run_goes_on(quiet_slurm, pool_env, tmp_path: Path) -> None:
    assert _up(pool_env, tmp_path).returncode == 0
    (first_job, _, _), = quiet_slurm.jobs()
    sweep = subprocess.Popen(
        [sys.executable, "-m", "patas", "explore", "-y", "--pool", POOL, "--cmd", "sleep 0.3; echo {i} $SLURM_JOB_ID",
         "--va", "i", "0", "30", "1"],
        env=pool_env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lab = tmp_path / "pataslab" / "grid"
    try:
        quiet_slurm.wait_for(lambda: sum(r["outcome"] == "done" for r in journal(lab)) >= 4, what="the first tasks")
        quiet_slurm.run("scancel", first_job)
        quiet_slurm.wait_for(
            lambda: re.search(r"slurm0 .* lost", _run(pool_env, tmp_path, "pool", "status", "--name", POOL).stdout),
            timeout_s=5, what="the cancelled job's agents marked lost (before the 10 s agent timeout)",
        )  # fmt: skip
        assert _up(pool_env, tmp_path).returncode == 0
        _, stderr = sweep.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0, stderr
    outputs = {i: (lab / str(i) / "stdout").read_text() for i in range(30)}
    exactly_once(lab, outputs)
    jobs = {text.split()[1] for text in outputs.values()}
    assert first_job in jobs and len(jobs) == 2, "the resubmitted job's agents finished the sweep"
    assert re.search(r"slurm\d+: joined the run", stderr), "the new job's agents joined the running sweep"
