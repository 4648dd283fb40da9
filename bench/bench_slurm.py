#!/usr/bin/env python3
"""patas on Slurm against Slurm's own job arrays, on a real Slurm (tests/slurmcluster.py).

    python bench/bench_slurm.py        # as root, with slurm-wlm and munge installed

Starts munged, slurmctld and three 2-CPU slurmd (c1, c2, c3) on this machine, then, in one run:
(1) time from launching `patas explore --slurm --slurm-nodes 3` to its first task committed
(its journal's first line), best and median of `--rounds`; (2) 2,000 short tasks (`echo`) as
`patas explore --slurm --slurm-nodes 3` (one job, an agent per node, 6 slots), from launch to
exit, against `sbatch --array=0-1999` of the same command with `%A_%a` outputs (6 at once on the
same nodes), from submission until the last array task has left the queue and its file exists.
Prints the times, the ratio, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from first_task import seconds_to_first_task  # bench/ is the script's folder

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

POLL_S = 0.01
TIMEOUT_S = 600.0
TASKS = 2000


def patas_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "patas", "explore", "-y", "-q", "--slurm", "--slurm-nodes", "3", "--bind", "127.0.0.1", *args]


def time_to_first_task(env: dict[str, str], cwd: Path) -> float:
    return seconds_to_first_task(patas_argv("--cmd", "echo {i}", "--va", "i", "0", "4", "1"), cwd, env, TIMEOUT_S)


def patas_sweep(env: dict[str, str], cwd: Path) -> float:
    started = time.monotonic()
    subprocess.run(patas_argv("--cmd", "echo {i}", "--va", "i", "0", str(TASKS), "1"), cwd=cwd, env=env, check=True,
                   capture_output=True, timeout=TIMEOUT_S)  # fmt: skip
    return time.monotonic() - started


def job_array(cluster, cwd: Path) -> float:  # type: ignore[no-untyped-def]
    outputs = cwd / "array"
    outputs.mkdir()
    started = time.monotonic()
    job = cluster.run("sbatch", "--parsable", f"--array=0-{TASKS - 1}", f"--output={outputs}/%A_%a.out",
                      "--wrap", "echo $SLURM_ARRAY_TASK_ID").stdout.strip()  # fmt: skip
    while True:
        queued = cluster.run("squeue", "-h", "-j", job, "-o", "%i", check=False).stdout.strip()
        if not queued and len(list(outputs.iterdir())) == TASKS:
            return time.monotonic() - started
        if time.monotonic() - started > TIMEOUT_S:
            raise RuntimeError("the job array did not finish within the timeout")
        time.sleep(POLL_S * 10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    from tests.slurmcluster import SlurmUnavailable, start_slurm

    try:
        cluster = start_slurm()
    except SlurmUnavailable as error:
        print(f"no Slurm here: {error.reason}", file=sys.stderr)
        return 1
    env = {**cluster.env, "PYTHONPATH": str(REPO)}
    load_before = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            firsts = []
            for round_ in range(options.rounds):
                folder = Path(scratch) / f"first{round_}"
                folder.mkdir()
                firsts.append(time_to_first_task(env, folder))
            sweep_folder = Path(scratch) / "sweep"
            sweep_folder.mkdir()
            sweep_s = patas_sweep(env, sweep_folder)
            array_s = job_array(cluster, Path(scratch))
    finally:
        cluster.close()
    load_after = os.getloadavg()
    print("Slurm: 3 nodes x 2 CPUs on this machine (slurmcluster.py)")
    print(f"time to first task, patas explore --slurm --slurm-nodes 3: best {min(firsts):.2f} s, "
          f"median {statistics.median(firsts):.2f} s ({options.rounds} rounds)")  # fmt: skip
    print(f"{TASKS} x echo: patas --slurm {sweep_s:.1f} s ({TASKS / sweep_s:.0f} tasks/s); "
          f"sbatch --array {array_s:.1f} s ({TASKS / array_s:.0f} tasks/s); patas is {array_s / sweep_s:.1f}x faster")  # fmt: skip
    print(f"load average (1, 5, 15 min): before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
