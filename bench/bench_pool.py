#!/usr/bin/env python3
"""Time to first task: a warm agent pool against bootstrapping agents for the run.

    python bench/bench_pool.py            # as root: 4 simulated SSH nodes (tests/sshcluster.py)
    python bench/bench_pool.py --local    # no cluster: one local node

For each of `--rounds` rounds it measures, from launching `patas explore` until the first task's
journal line exists (the first task committed: a one-line `echo`), (1) a normal run, whose agents
are started for it over SSH (their code already cached on the nodes: a *warm* bootstrap), and (2)
`patas explore --pool`, whose agents are already running. Both pay for starting the CLI; the
rows below subtract nothing. It prints best and median and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from first_task import seconds_to_first_task  # bench/ is the script's folder

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TIMEOUT_S = 60.0


def time_to_first_task(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds from launching `patas explore ARGS` to its first journal line."""
    return seconds_to_first_task([sys.executable, "-m", "patas", "explore", *args, "-y", "-q"], cwd, env, TIMEOUT_S)


def measure(node_args: list[str], env: dict[str, str], rounds: int) -> tuple[list[float], list[float]]:
    sweep = ["--cmd", "echo {i}", "--va", "i", "0", "4", "1", "--workdir", "~"]
    subprocess.run([sys.executable, "-m", "patas", "pool", "up", "--name", "bench", *node_args], env=env, check=True,
                   capture_output=True)  # fmt: skip
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(rounds):
            for kind, extra, into in (("run", node_args, cold), ("pool", ["--pool", "bench"], warm)):
                folder = Path(scratch) / f"{kind}{round_}"
                folder.mkdir()
                into.append(time_to_first_task([*sweep, *extra], folder, env))
    subprocess.run([sys.executable, "-m", "patas", "pool", "down", "--name", "bench"], env=env, capture_output=True)
    return cold, warm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--local", action="store_true", help="one local node instead of a simulated cluster")
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    pools = tempfile.mkdtemp(prefix="patas-bench-pools-")
    env = {**os.environ, "PATAS_POOLS": pools}
    cluster = None
    if options.local:
        node_args, where = ["--node", "localhost", "2"], "1 local node x 2 slots"
    else:
        from tests.sshcluster import ClusterUnavailable, build_cluster

        try:
            cluster = build_cluster(4, workdir=Path(tempfile.mkdtemp(prefix="patas-bench-cluster-")))  # removed below
        except ClusterUnavailable as error:
            print(f"no simulated cluster ({error.reason}); try --local")
            return 0
        node_args = ["--ssh-config", str(cluster.ssh_config_path)]
        for node in cluster.nodes:
            node_args += ["--node", node.name, "2"]
        where = "4 simulated SSH nodes x 2 slots"
    try:
        # One run first so that every node has the agent cached: the run rows are warm bootstraps.
        with tempfile.TemporaryDirectory() as scratch:
            time_to_first_task(["--cmd", "echo {i}", "--va", "i", "0", "1", "1", "--workdir", "~", *node_args], Path(scratch), env)
        cold, warm = measure(node_args, env, options.rounds)
    finally:
        if cluster is not None:
            cluster.close()
            shutil.rmtree(cluster.workdir, ignore_errors=True)  # it holds the nodes' private key
    print(f"Time to first task, {where}, {options.rounds} rounds (seconds, from launching the CLI):")
    print(f"  {'':36} {'best':>6} {'median':>7}")
    print(f"  {'explore, agents started for the run':36} {min(cold):6.2f} {statistics.median(cold):7.2f}")
    print(f"  {'explore --pool (warm pool)':36} {min(warm):6.2f} {statistics.median(warm):7.2f}")
    print(f"  pool / run (median): {statistics.median(warm) / statistics.median(cold):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
