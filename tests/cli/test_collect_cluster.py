"""`--collect` across a simulated cluster (tests/sshcluster.py): nodes with private homes and /tmp,
so every collected file in the pataslab travelled back over ZeroMQ."""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter

import pytest

from tests.cli.test_explore_cluster import nodes_args, wait_until_no_processes
from tests.running import done_ids, patas
from tests.sshcluster import SimulatedCluster

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.geteuid() != 0, reason="a simulated cluster needs root (users, namespaces, mounts)"),
]

CLEANUP_TIMEOUT_S = 15.0


def test_files_written_on_the_nodes_come_back_byte_exact_per_task(clean_sim_cluster, tmp_path):
    cluster = clean_sim_cluster
    command = (
        'cd "$PATAS_TASK_DIR" && head -c $((200000 + PATAS_VAR_i * 4099)) /dev/urandom > model.bin && mkdir metrics'
        ' && echo "$PATAS_NODE_NAME {i}" > metrics/where.csv && hostname && echo "$PATAS_TASK_DIR"'
        " && sha256sum model.bin && sleep 0.2"
    )
    run = patas("explore", "--cmd", command, "--va", "i", "0", "24", "1", "--workdir", "~",
                "--collect", "model.bin", "--collect", "metrics/", *nodes_args(cluster), "-y", cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run.stderr
    lab = tmp_path / "pataslab/grid"
    assert done_ids(lab) == list(range(24))
    hosts = Counter()
    for i in range(24):
        host, folder, digest_line = (lab / str(i) / "stdout").read_text().splitlines()
        files = lab / str(i) / "files"
        assert hashlib.sha256((files / "model.bin").read_bytes()).hexdigest() == digest_line.split()[0]
        assert (files / "model.bin").stat().st_size == 200000 + i * 4099
        assert (files / "metrics/where.csv").read_text() == f"{host} {i}\n"  # the task's own, from its node
        assert folder.startswith("/tmp/patas-")  # the node's own temporary folder
        hosts[host] += 1
    assert set(hosts) == {node.name for node in cluster.nodes}
    assert wait_until_no_processes(cluster) == {}
    # Each node's scratch folder went with its agent: nothing of the tasks is left there.
    deadline = time.monotonic() + CLEANUP_TIMEOUT_S
    while left := left_in_tmp(cluster):
        assert time.monotonic() < deadline, f"left on the nodes: {left}"
        time.sleep(0.1)


def left_in_tmp(cluster: SimulatedCluster) -> dict[str, list[str]]:
    listings = {node.name: cluster.run_on(node, "ls -A /tmp").stdout.split() for node in cluster.nodes}
    return {name: names for name, names in listings.items() if names}
