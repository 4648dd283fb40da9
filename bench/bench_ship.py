#!/usr/bin/env python3
"""Shipping code to nodes: `--ship` against `rsync -a` over ssh, to the same 4 simulated nodes.

    python bench/bench_ship.py                   # as root: 4 simulated SSH nodes (tests/sshcluster.py)
    python bench/bench_ship.py --mb 50 --files 1000

Builds a folder of `--files` files totalling `--mb` MB (sizes spread from 1 KB up, random bytes:
nothing compresses), then in the same run, to all nodes in parallel:
1. first ship: patas (snapshot with every file hashed, then each node's cache filled) and
   `rsync -a -e 'ssh -F <cluster ssh_config>'` into an empty folder on each node;
2. second ship of the unchanged folder (patas: its digest cache spares hashing; one query per
   node finds the snapshot complete), and rsync again;
3. a ship after editing one file.
patas is timed from the snapshot to the last node done, over SSH connections opened beforehand
(a run holds them already); each rsync pays for its own ssh connection, as it would. Prints
seconds, the ratio patas/rsync, and the load average (the machine is shared: ratios matter).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from patas.broker.ship.snapshot import take_snapshot  # noqa: E402
from patas.broker.ship.transfer import SSHTarget, deliver  # noqa: E402

LIMIT_BYTES = 1 << 40


class Quiet:
    def shipping(self, sent: int, total: int) -> None:
        pass

    def shipped(self, delivery, snapshot) -> None:  # type: ignore[no-untyped-def]
        pass


def make_folder(root: Path, files: int, total_bytes: int, seed: int = 7) -> None:
    """`files` files in nested folders, sizes log-spread, summing to about `total_bytes`."""
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1.6) for _ in range(files)]
    scale = total_bytes / sum(weights)
    for i, weight in enumerate(weights):
        path = root / f"pkg{i % 50}" / f"mod{i % 7}" / f"file{i}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(max(1, int(weight * scale))))


def rsync_all(cluster, folder: Path) -> float:  # type: ignore[no-untyped-def]
    def one(node) -> None:  # type: ignore[no-untyped-def]
        subprocess.run(["rsync", "-a", "-e", f"ssh -F {cluster.ssh_config_path}", f"{folder}/", f"{node.name}:rsync-copy/"],
                       check=True, capture_output=True)  # fmt: skip

    started = time.monotonic()
    with ThreadPoolExecutor(len(cluster.nodes)) as pool:
        list(pool.map(one, cluster.nodes))
    return time.monotonic() - started


def patas_ship(targets: list[SSHTarget], folder: Path, cache: Path) -> tuple[float, int]:
    started = time.monotonic()
    snapshot = take_snapshot(["."], folder, LIMIT_BYTES, cache)
    deliveries = deliver(snapshot, targets, Quiet())
    return time.monotonic() - started, sum(d.bytes_sent for d in deliveries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--files", type=int, default=5000)
    options = parser.parse_args()
    if shutil.which("rsync") is None:
        print("rsync is not installed (apt-get install rsync)", file=sys.stderr)
        return 1
    from patas.broker.ssh.options import SSHOptions
    from patas.broker.ssh.session import SSHSession
    from patas.common.config import Node
    from tests.sshcluster import ClusterUnavailable, build_cluster

    scratch = Path(tempfile.mkdtemp(prefix="patas-bench-ship-"))
    try:
        (scratch / "cluster").mkdir(mode=0o700)
        cluster = build_cluster(4, workdir=scratch / "cluster")
    except ClusterUnavailable as error:
        print(f"no simulated cluster: {error.reason}", file=sys.stderr)
        return 1
    try:
        folder = scratch / "project"
        make_folder(folder, options.files, options.mb << 20)
        ssh = SSHOptions(config_path=cluster.ssh_config_path)
        sessions = [SSHSession(Node(n.name, n.name), ssh) for n in cluster.nodes]
        targets = [SSHTarget(s.node.name, s.client, s.home) for s in sessions]
        cache = scratch / "coordinator-cache"
        rows = []
        for step in ("first", "second (unchanged)", "after editing one file"):
            if step.startswith("after"):
                edited = next(folder.rglob("file1.dat"))
                edited.write_bytes(os.urandom(edited.stat().st_size))
            rsync_s = rsync_all(cluster, folder)
            patas_s, sent = patas_ship(targets, folder, cache)
            rows.append((step, patas_s, rsync_s, sent, os.getloadavg()[0]))
        for session in sessions:
            session.close()
    finally:
        cluster.close()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{options.files} files, {options.mb} MB, to {len(cluster.nodes)} simulated nodes in parallel")
    print(f"{'ship':<24}{'patas s':>9}{'rsync s':>9}{'ratio':>7}{'patas sent':>13}{'load':>6}")
    for step, patas_s, rsync_s, sent, load in rows:
        print(f"{step:<24}{patas_s:>9.2f}{rsync_s:>9.2f}{patas_s / rsync_s:>7.2f}{sent / 2**20:>10.1f} MB{load:>6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
