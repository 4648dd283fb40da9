"""`patas explore` across a simulated cluster: real sshd nodes, each with its own user, private
home, hostname and network namespace (tests/sshcluster.py). Nothing a node writes is visible
here, so every output in the pataslab travelled back over ZeroMQ."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from patas.broker.local.early_start import AGENT_BOOT
from tests.running import done_ids, journal, patas, start_patas
from tests.sshcluster import NodeOptions, NodePython, SimulatedCluster

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.geteuid() != 0, reason="a simulated cluster needs root (users, namespaces, mounts)"),
]

ORPHAN_TIMEOUT_S = 15.0


def nodes_args(cluster: SimulatedCluster, workers: int = 2) -> list[str]:
    args = ["--ssh-config", str(cluster.ssh_config_path)]
    for node in cluster.nodes:
        args += ["--node", node.name, str(workers)]
    return args


def wait_until_no_processes(cluster: SimulatedCluster) -> dict[str, list[int]]:
    deadline = time.monotonic() + ORPHAN_TIMEOUT_S
    while time.monotonic() < deadline:
        left = {node.name: cluster.processes_of(node) for node in cluster.nodes}
        if not any(left.values()):
            return {}
        time.sleep(0.1)
    return {name: pids for name, pids in left.items() if pids}


def test_a_sweep_spreads_over_every_node_and_all_output_comes_home(clean_sim_cluster, tmp_path):
    cluster = clean_sim_cluster
    command = "echo {i} > ~/written-{i}; sleep 0.3; hostname; echo $PATAS_NODE_NAME {i}"  # long enough for all to join
    run = patas("explore", "--cmd", command, "--va", "i", "0", "40", "1", "--workdir", "~", *nodes_args(cluster), "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    lab = tmp_path / "pataslab/grid"
    assert done_ids(lab) == list(range(40))
    outputs = [(lab / str(i) / "stdout").read_text().split() for i in range(40)]
    assert all(out[2] == str(i) and out[0] == out[1] for i, out in enumerate(outputs))  # hostname == node name
    assert set(Counter(out[0] for out in outputs)) == {node.name for node in cluster.nodes}
    # What the tasks wrote stayed on their nodes: private homes, invisible from here.
    node0 = cluster.nodes[0]
    assert not Path(node0.home, "written-0").exists() or Path(node0.home).is_mount() is False
    on_node = cluster.run_on(node0, "ls ~").stdout.split()
    written_here = [i for i, out in enumerate(outputs) if out[0] == node0.name]
    assert sorted(on_node) == sorted(f"written-{i}" for i in written_here)
    assert wait_until_no_processes(cluster) == {}


def test_the_agent_is_cached_on_the_node_and_reused(clean_sim_cluster, tmp_path):
    cluster = clean_sim_cluster
    node = cluster.nodes[1]
    args = ["explore", "--cmd", "echo {i}", "--va", "i", "0", "2", "1", "--workdir", "~", "--ssh-config", str(cluster.ssh_config_path), "--node", node.name, "-y"]
    assert patas(*args, cwd=tmp_path).code == 0
    listing = "ls -a --full-time ~/.cache/patas"
    first = cluster.run_on(node, listing).stdout
    assert len(re.findall(r" agent-[0-9a-f]{16}\n", first)) == 1 and ".upload" not in first
    assert patas(*args, "--redo", cwd=tmp_path).code == 0
    assert cluster.run_on(node, listing).stdout == first  # not shipped again


def test_nodes_that_cannot_start_are_reported_and_the_rest_carries_on(make_sim_cluster, tmp_path):
    cluster = make_sim_cluster(
        4, node_options={"node2": NodeOptions(python=NodePython.MISSING), "node3": NodeOptions(python=NodePython.OLD)}
    )
    other_key = tmp_path / "other_key"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {other_key}")
    empty_known_hosts = tmp_path / "empty_known_hosts"
    empty_known_hosts.touch()
    node0, node1, node2, node3 = cluster.nodes
    known = cluster.known_hosts_path
    (tmp_path / "cluster.yaml").write_text(
        "name: sim\nnodes:\n"
        f"  - {{name: good, hostname: {node0.host}, user: {node0.user}, private_key: {cluster.key_path}}}\n"
        f"  - {{name: wrongkey, hostname: {node1.host}, user: {node1.user}, private_key: {other_key}}}\n"
        f"  - {{name: nopython, hostname: {node2.host}, user: {node2.user}, private_key: {cluster.key_path}}}\n"
        f"  - {{name: oldpython, hostname: {node3.host}, user: {node3.user}, private_key: {cluster.key_path}}}\n"
        f"  - {{name: refused, hostname: {cluster.coordinator_address}, port: 1, private_key: {cluster.key_path}}}\n"
    )
    (tmp_path / "ssh_config").write_text(f"Host *\n    UserKnownHostsFile {known}\n    IdentitiesOnly yes\n")
    run = patas(
        "explore", "--cmd", "echo {i}", "--va", "i", "0", "6", "1", "--workdir", "~", "--cluster", "cluster.yaml",
        "--ssh-config", "ssh_config", "-y", cwd=tmp_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert "1/5 nodes up: good (" in run.stderr
    assert f"  wrongkey: authentication failed (user {node1.user}, key {other_key})" in run.stderr
    assert "  nopython: no python3 on its PATH (install Python >= 3.9 on the node)" in run.stderr
    assert "  oldpython: python3 is 3.8; the agent needs >= 3.9 (install a newer Python on the node)" in run.stderr
    assert f"  refused: cannot connect to {cluster.coordinator_address}:1: connection refused" in run.stderr
    assert done_ids(tmp_path / "pataslab/grid") == list(range(6))

    # An unknown host key is refused with the fix, unless new hosts are accepted (and remembered).
    (tmp_path / "ssh_config").write_text(f"Host *\n    UserKnownHostsFile {empty_known_hosts}\n")
    strict = patas("explore", "--cmd", "echo {i}", "--va", "i", "0", "1", "1", "--workdir", "~", "--cluster", "cluster.yaml", "--ssh-config", "ssh_config", "--filter-nodes", "x", "-y", cwd=tmp_path)
    assert strict.code == 1 and "no node has all these tags" in strict.stderr  # filters before connecting
    (tmp_path / "one.yaml").write_text(
        f"nodes:\n  - {{name: good, hostname: {node0.host}, user: {node0.user}, private_key: {cluster.key_path}}}\n"
    )
    unknown = patas("explore", "--cmd", "echo {i}", "--va", "i", "0", "1", "1", "--workdir", "~", "--cluster", "one.yaml", "--ssh-config", "ssh_config", "-y", "--redo", cwd=tmp_path)
    assert unknown.code == 1
    assert unknown.stderr.startswith(f"Error: no node can be used: good: unknown host key for {node0.host}:22 (verify it")
    accepted = patas("explore", "--cmd", "echo {i}", "--va", "i", "0", "1", "1", "--workdir", "~", "--cluster", "one.yaml", "--ssh-config", "ssh_config", "--accept-new-hosts", "-y", "--redo", cwd=tmp_path)
    assert accepted.code == 0, accepted.stderr
    assert f"{node0.host} ssh-ed25519 " in empty_known_hosts.read_text()


def test_agents_can_tunnel_through_ssh(clean_sim_cluster, tmp_path):
    cluster = clean_sim_cluster
    run = patas("explore", "--cmd", "hostname; echo {i}", "--va", "i", "0", "8", "1", "--workdir", "~", "--tunnel", *nodes_args(cluster, 1), "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert done_ids(tmp_path / "pataslab/grid") == list(range(8))


def test_remote_tasks_stream_over_curve_while_local_ones_write_into_the_lab(clean_sim_cluster, tmp_path):
    cluster = clean_sim_cluster
    node = cluster.nodes[0]
    # Long enough that both agents take tasks; each task says what its stdout is and where it ran.
    command = "sleep 0.2; readlink /proc/self/fd/1; echo $PATAS_NODE_NAME"
    run = patas("explore", "--cmd", command, "--va", "i", "0", "12", "1", "--workdir", "~",
                "--ssh-config", str(cluster.ssh_config_path), "--node", node.name, "1", "--node", "localhost", "1", "-y",
                cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run.stderr
    lab = tmp_path / "pataslab/grid"
    outputs = {i: (lab / str(i) / "stdout").read_text().split() for i in done_ids(lab)}
    assert len(outputs) == 12
    assert len({where for _, where in outputs.values()}) == 2, outputs  # both nodes ran tasks
    for i, (stdout, where) in outputs.items():
        if where == node.name:  # through a pipe to its agent, and back over CURVE (the node's files are private)
            assert stdout.startswith("pipe:"), stdout
        else:  # this machine's agent: the task's stdout is its attempt file in the lab
            assert stdout == str(lab / str(i) / "attempt-1.stdout"), stdout


def test_secrets_never_appear_on_a_command_line(clean_sim_cluster, tmp_path):
    cluster = clean_sim_cluster
    node = cluster.nodes[0]
    process = start_patas(
        "explore", "--cmd", "sleep 3; echo {i}", "--va", "i", "0", "2", "1", "--workdir", "~",
        "--ssh-config", str(cluster.ssh_config_path), "--node", node.name, "--node", "localhost", "1", "-y", cwd=tmp_path,
    )  # fmt: skip
    lab = tmp_path / "pataslab/grid"
    deadline = time.monotonic() + 30
    agents: list[str] = []
    while time.monotonic() < deadline and len(agents) < 2:
        agents = [line for line in _command_lines() if "patas.agent" in line]
        time.sleep(0.1)
    process.communicate(timeout=60)
    assert process.returncode == 0
    assert len(agents) >= 2, agents
    # An agent's command line is `... -m patas.agent`, or names a private config file; a local
    # agent's is its boot line and the import path it is given: no key on any of them.
    for line in agents:
        head, boot, paths = line.rstrip().partition(f" -S -c {AGENT_BOOT} ")
        if boot:
            assert all(path.startswith("/") for path in paths.split(" ")), line
        else:
            assert re.fullmatch(r".* -m patas\.agent( --config \S+)?", line.rstrip()), line
    assert "secret" not in (lab / "experiment.yaml").read_text()


def test_no_orphans_when_the_coordinator_is_killed(clean_sim_cluster, tmp_path):
    cluster = clean_sim_cluster
    process = start_patas("explore", "--cmd", "sleep 60{i}", "--va", "i", "0", "8", "1", "--workdir", "~", *nodes_args(cluster, 1), "-y", cwd=tmp_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sum(len(cluster.processes_of(n)) > 2 for n in cluster.nodes) < 4:
        time.sleep(0.1)
    assert all(cluster.processes_of(n) for n in cluster.nodes), "the tasks did not start on every node"
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert wait_until_no_processes(cluster) == {}
    assert journal(tmp_path / "pataslab/grid") == []


def _command_lines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return lines


def test_a_partitioned_node_loses_its_tasks_to_the_others_exactly_once(clean_sim_cluster, tmp_path):
    from tests.running import exactly_once

    cluster = clean_sim_cluster
    cut = cluster.nodes[2]
    process = start_patas(
        "explore", "--cmd", "sleep 0.3; echo task {i}", "--va", "i", "0", "60", "1", "--workdir", "~",
        "--agent-timeout", "3", *nodes_args(cluster, 1), "-y", cwd=tmp_path,
    )  # fmt: skip
    lab = tmp_path / "pataslab/grid"
    deadline = time.monotonic() + 60
    while len(journal(lab)) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    cluster.cut_link(cut)
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        cluster.restore_link(cut)
    assert process.returncode == 0, stderr
    assert f"{cut.name}: lost: silent for 3 s" in stderr
    exactly_once(lab, {i: f"task {i}\n" for i in range(60)})
    assert wait_until_no_processes(cluster) == {}
