"""Nodes unlike the coordinator: an sshd without the SFTP subsystem (hardened login nodes) still
gets the agent; a node whose disk is full says so, naming the node and the folder."""

from __future__ import annotations

import os

import paramiko
import pytest

from tests.running import done_ids, patas
from tests.sshcluster import NodeOptions, SimulatedCluster

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.geteuid() != 0, reason="a simulated cluster needs root (users, namespaces, mounts)"),
]


def sweep(cluster: SimulatedCluster, count: int = 6) -> list[str]:
    args = ["explore", "--cmd", "hostname; echo {i}", "--va", "i", "0", str(count), "1", "--workdir", "~"]
    args += ["--ssh-config", str(cluster.ssh_config_path)]
    for node in cluster.nodes:
        args += ["--node", node.name, "1"]
    return [*args, "-y"]


def open_sftp(cluster: SimulatedCluster) -> None:
    node = cluster.nodes[0]
    client = paramiko.SSHClient()
    client.load_host_keys(str(cluster.known_hosts_path))
    try:
        client.connect(node.host, node.port, node.user, key_filename=str(cluster.key_path), allow_agent=False, look_for_keys=False)
        client.open_sftp().close()
    finally:
        client.close()


def test_a_node_without_sftp_gets_the_agent_over_an_exec_channel(make_sim_cluster, tmp_path):
    cluster = make_sim_cluster(1, node_options={"node0": NodeOptions(sftp=False)})
    with pytest.raises(paramiko.SSHException):
        open_sftp(cluster)  # the node really refuses SFTP
    run = patas(*sweep(cluster), cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert done_ids(tmp_path / "pataslab/grid") == list(range(6))
    assert (tmp_path / "pataslab/grid/0/stdout").read_text() == "node0\n0\n"


def test_a_node_whose_disk_is_full_says_so(make_sim_cluster, tmp_path):
    cluster = make_sim_cluster(1)
    node = cluster.nodes[0]
    small = cluster.run_on(
        node, f"mkdir -p {node.home}/.cache && mount -n -t tmpfs -o size=64k,uid={node.uid},mode=0700 tmpfs {node.home}/.cache",
        as_root=True,
    )
    assert small.returncode == 0, small.stderr
    filled = cluster.run_on(node, "head -c 1000000 /dev/zero > ~/.cache/filler")
    assert "No space left on device" in filled.stderr  # full now
    run = patas(*sweep(cluster), cwd=tmp_path)
    assert run.code == 1
    fix = "free space there, or on the filesystem that holds it"
    assert f"Error: no node can be used: node0: disk full (0 KiB free in ~/.cache/patas; {fix})\n" in run.stderr
    assert "Traceback" not in run.stderr and "size mismatch" not in run.stderr
    listing = cluster.run_on(node, "ls -A ~/.cache ~/.cache/patas")
    assert listing.stdout.split() == ["/home/" + node.user + "/.cache:", "filler", "patas", "/home/" + node.user + "/.cache/patas:"]
