#!/usr/bin/env python3
"""Soak: a long sweep over 4 simulated SSH nodes while agents are killed and links cut at random.

    python bench/bench_soak.py                  # as root: 20,000 tasks, clean run then faulty run
    python bench/bench_soak.py --tasks 2000     # shorter

Two runs of the same sweep (`echo {i}` over 4 nodes x 2 slots, --agent-timeout 3): one left
alone, one with a fault every few seconds, at random: SIGKILL of a node's agent, or the node's
link cut (veth down) for longer than the lease, then restored. Afterwards it checks the faulty
run's pataslab task by task and reports tasks lost (no committed output), duplicated (committed
twice), outputs that differ from what the task printed, and the throughput cost of the faults.
Targets: 0 lost, 0 duplicated.
"""

from __future__ import annotations

import argparse
import json
import shutil
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.sshcluster import ClusterUnavailable, SimulatedCluster, build_cluster  # noqa: E402

AGENT_TIMEOUT_S = 3
CUT_S = 5.0  # longer than the lease: the node's tasks must move
FAULT_EVERY_S = (2.0, 5.0)
FAULTS_PER_NODE = 2  # each fault costs the node one of its agent restarts (three at most)


@dataclass
class FaultLog:
    events: list[str] = field(default_factory=list)


def sweep_args(cluster: SimulatedCluster, tasks: int) -> list[str]:
    args = ["explore", "--cmd", "echo {i}", "--va", "i", "0", str(tasks), "1", "--workdir", "~", "-y", "-q",
            "--agent-timeout", str(AGENT_TIMEOUT_S), "--ssh-config", str(cluster.ssh_config_path)]  # fmt: skip
    for node in cluster.nodes:
        args += ["--node", node.name, "2"]
    return args


def run_sweep(cluster: SimulatedCluster, tasks: int, folder: Path, faults: FaultLog | None, seed: int) -> float:
    folder.mkdir()
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "patas", *sweep_args(cluster, tasks)], cwd=folder,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    stop = threading.Event()
    injector = None
    if faults is not None:
        injector = threading.Thread(target=inject_faults, args=(cluster, stop, faults, random.Random(seed)), daemon=True)
        injector.start()
    _, stderr = process.communicate()
    elapsed = time.monotonic() - started
    stop.set()
    if injector is not None:
        injector.join()
    for node in cluster.nodes:
        cluster.restore_link(node)
    if process.returncode != 0:
        print(f"patas exited {process.returncode}:\n{stderr[-2000:]}")
    return elapsed


def inject_faults(cluster: SimulatedCluster, stop: threading.Event, faults: FaultLog, rng: random.Random) -> None:
    budget = {node.name: FAULTS_PER_NODE for node in cluster.nodes}
    while not stop.wait(rng.uniform(*FAULT_EVERY_S)):
        candidates = [n for n in cluster.nodes if budget[n.name] > 0]
        if not candidates:
            return
        node = rng.choice(candidates)
        budget[node.name] -= 1
        if rng.random() < 0.5:
            cluster.run_on(node, "pkill -KILL -f 'patas.agent' || true")
            faults.events.append(f"{time.strftime('%X')} killed the agent on {node.name}")
        else:
            cluster.cut_link(node)
            faults.events.append(f"{time.strftime('%X')} cut {node.name} for {CUT_S:.0f} s")
            if stop.wait(CUT_S):
                cluster.restore_link(node)
                return
            cluster.restore_link(node)


def audit(experiment: Path, tasks: int) -> dict[str, int]:
    done: dict[int, int] = {}
    with open(experiment / "journal.jsonl") as journal:
        for line in journal:
            record = json.loads(line)
            if record["outcome"] == "done":
                done[record["task_id"]] = done.get(record["task_id"], 0) + 1
    wrong = sum(
        1 for i in done if (experiment / str(i) / "stdout").read_text() != f"{i}\n"
    )
    return {
        "lost": sum(1 for i in range(tasks) if i not in done),
        "duplicated": sum(1 for count in done.values() if count > 1),
        "wrong output": wrong,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()
    try:
        cluster = build_cluster(4, workdir=Path(tempfile.mkdtemp(prefix="patas-soak-cluster-")))  # removed below
    except ClusterUnavailable as error:
        print(f"no simulated cluster: {error.reason}")
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="patas-soak-"))
    faults = FaultLog()
    try:
        clean = run_sweep(cluster, options.tasks, scratch / "clean", None, options.seed)
        cluster.reset()
        faulty = run_sweep(cluster, options.tasks, scratch / "faulty", faults, options.seed)
        result = audit(scratch / "faulty" / "pataslab" / "grid", options.tasks)
    finally:
        cluster.close()
        shutil.rmtree(cluster.workdir, ignore_errors=True)  # it holds the nodes' private key
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"Soak: {options.tasks:,} tasks over 4 simulated SSH nodes x 2 slots, seed {options.seed}")
    for event in faults.events:
        print(f"  {event}")
    print(f"  clean run:  {clean:6.1f} s  ({options.tasks / clean:,.0f} tasks/s)")
    print(f"  faulty run: {faulty:6.1f} s  ({options.tasks / faulty:,.0f} tasks/s), {len(faults.events)} faults")
    print(f"  throughput with faults: {clean / faulty:.2f}x of the clean run")
    print("  " + ", ".join(f"{name}: {count}" for name, count in result.items()))
    return 0 if not any(result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
