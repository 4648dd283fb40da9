"""Nodes unlike the coordinator: an sshd without the SFTP subsystem (hardened login nodes) still
gets the agent; a node whose disk is full says so, naming the node and the folder."""

from __future__ import annotations

import os
import subprocess
import sys

import paramiko
import pytest

from tests.running import ENV, done_ids, patas
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


def test_a_pool_agent_starts_on_a_node_without_sftp(make_sim_cluster, tmp_path):
    """A pool agent's configuration (it holds a secret) is written over an exec channel too."""
    cluster = make_sim_cluster(1, node_options={"node0": NodeOptions(sftp=False)})
    node = cluster.nodes[0]
    env = {**ENV, "PATAS_POOLS": str(tmp_path / "pools")}
    pool = ["--name", "nosftp"]
    try:
        up = run_patas(env, tmp_path, "pool", "up", *pool, "--ssh-config", str(cluster.ssh_config_path), "--node", node.name, "1")
        assert up.returncode == 0 and "1/1 agents ready" in up.stderr, up.stderr
        modes = cluster.run_on(node, "stat -c %a ~/.cache/patas/pools/nosftp/*.json").stdout.split()
        assert modes == ["600"]
        (tmp_path / "work").mkdir()
        result = run_patas(env, tmp_path / "work", "explore", "--pool", "nosftp", "--cmd", "echo {i}", "--va", "i", "0", "4", "1", "--workdir", "~", "-y")
        assert result.returncode == 0, result.stderr
    finally:
        run_patas(env, tmp_path, "pool", "down", *pool)


def run_patas(env, cwd, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "patas", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
