"""The simulated cluster itself: real sshd nodes that OpenSSH and paramiko reach with verified host
keys, private node filesystems, partitions that cut and heal, and a teardown that leaves nothing."""

from __future__ import annotations

import dataclasses
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest

from tests import sshcluster_ledger as ledgers
from tests.sshcluster import NodeOptions, NodePython, SimNode, SimulatedCluster, build_cluster

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.geteuid() != 0, reason="a simulated cluster needs root (users, namespaces, mounts)"),
]

REPO = Path(__file__).resolve().parents[1]
VERSION_PROBE = "python3 -c 'import sys; print(sys.version_info[:2])'"
CONNECT_TIMEOUT_S = 5.0
HEAL_TIMEOUT_S = 10.0


def ssh(cluster: SimulatedCluster, node: SimNode, command: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-F", str(cluster.ssh_config_path), *options, node.name, command],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )


def connect(cluster: SimulatedCluster, node: SimNode, known_hosts: Path | None = None) -> paramiko.SSHClient:
    """A paramiko client that refuses any host key not in the known_hosts file."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or cluster.known_hosts_path))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        node.host, port=node.port, username=node.user, key_filename=str(cluster.key_path),
        look_for_keys=False, allow_agent=False, timeout=CONNECT_TIMEOUT_S,
    )
    return client


def execute(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command, timeout=30)
    status = stdout.channel.recv_exit_status()
    return status, stdout.read().decode(), stderr.read().decode()


def test_openssh_reaches_every_node_by_its_alias(sim_cluster: SimulatedCluster) -> None:
    for node in sim_cluster.nodes:
        done = ssh(sim_cluster, node, "hostname; id -un; pwd")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [node.hostname, node.user, node.home]


def test_openssh_checks_host_keys_against_the_known_hosts(sim_cluster: SimulatedCluster, tmp_path: Path) -> None:
    node0, node1 = sim_cluster.nodes[:2]
    strict = ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null"]
    login = ["-i", str(sim_cluster.key_path), "-o", "IdentitiesOnly=yes", "-p", str(node0.port)]
    login.append(f"{node0.user}@{node0.host}")

    def plain_ssh(known_hosts: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-F", "/dev/null", *strict, "-o", f"UserKnownHostsFile={known_hosts}", *login, "hostname"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )

    assert plain_ssh(sim_cluster.known_hosts_path).stdout == f"{node0.hostname}\n"
    empty = tmp_path / "empty_known_hosts"
    empty.touch()
    assert "Host key verification failed" in plain_ssh(empty).stderr
    lines = {line.split()[0]: line.split()[1:] for line in sim_cluster.known_hosts_path.read_text().splitlines()}
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"{node0.host} {' '.join(lines[node1.host])}\n")  # node1's key under node0's address
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in plain_ssh(wrong).stderr


def test_paramiko_runs_the_system_python_on_every_node(sim_cluster: SimulatedCluster) -> None:
    expected = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])"],
                              capture_output=True, text=True, check=True).stdout
    for node in sim_cluster.nodes:
        with connect(sim_cluster, node) as client:
            assert execute(client, VERSION_PROBE) == (0, expected, "")
            status, path, _ = execute(client, "command -v python3; echo $PATH")
            assert status == 0
            assert path.splitlines()[0] == "/usr/bin/python3"
            assert ".pyenv" not in path and sys.prefix not in path


def test_paramiko_refuses_a_node_whose_host_key_is_unknown(sim_cluster: SimulatedCluster, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.touch()
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        connect(sim_cluster, sim_cluster.nodes[0], known_hosts=empty)


def test_the_ssh_config_is_usable_by_paramiko_and_sftp_works(clean_sim_cluster: SimulatedCluster) -> None:
    cluster = clean_sim_cluster
    node = cluster.nodes[1]
    entry = paramiko.SSHConfig.from_path(str(cluster.ssh_config_path)).lookup(node.name)
    assert (entry["hostname"], int(entry["port"]), entry["user"]) == (node.host, node.port, node.user)
    assert entry["identityfile"] == [str(cluster.key_path)]
    assert entry["userknownhostsfile"] == str(cluster.known_hosts_path)
    with connect(cluster, node) as client, client.open_sftp() as sftp:
        with sftp.open("shipped.txt", "w") as shipped:
            shipped.write("agent code")
    assert cluster.run_on(node, "cat ~/shipped.txt").stdout == "agent code"


def test_what_a_node_writes_stays_on_it_and_it_cannot_see_the_checkout(clean_sim_cluster: SimulatedCluster) -> None:
    cluster = clean_sim_cluster
    node0, node1 = cluster.nodes[:2]
    marker = f"written-by-{node0.user}"
    done = ssh(cluster, node0, f"echo result > ~/{marker}; echo scratch > /tmp/{marker}")
    assert done.returncode == 0, done.stderr
    assert not Path(node0.home).exists()
    assert not Path("/tmp", marker).exists()
    assert cluster.run_on(node0, f"cat ~/{marker} /tmp/{marker}").stdout == "result\nscratch\n"
    assert cluster.run_on(node1, f"ls /tmp/{marker}").returncode != 0
    assert (REPO / "patas").is_dir() and cluster.run_on(node0, f"ls -A {REPO}").stdout == ""


def test_run_on_sees_the_node_as_ssh_does(clean_sim_cluster: SimulatedCluster) -> None:
    cluster = clean_sim_cluster
    command = "hostname; id; pwd; echo $HOME $USER $SHELL $PATH; command -v python3"
    for node in cluster.nodes:
        over_ssh = ssh(cluster, node, command)
        assert over_ssh.returncode == 0, over_ssh.stderr
        assert cluster.run_on(node, command).stdout == over_ssh.stdout


def test_nodes_reach_the_coordinator_and_their_own_loopback(clean_sim_cluster: SimulatedCluster) -> None:
    cluster = clean_sim_cluster
    with socket.create_server((cluster.coordinator_address, 0)) as server:
        server.settimeout(CONNECT_TIMEOUT_S)
        port = server.getsockname()[1]
        probe = (
            "import socket\n"
            "with socket.create_server(('127.0.0.1', 0)) as local:\n"
            "    socket.create_connection(local.getsockname()).close()\n"
            f"with socket.create_connection(('{cluster.coordinator_address}', {port})) as up:\n"
            "    up.sendall(socket.gethostname().encode() + b' loopback-ok')\n"
        )
        for node in cluster.nodes:
            done = ssh(cluster, node, f'python3 -c "{probe}"')
            assert done.returncode == 0, done.stderr
            connection, (address, _) = server.accept()
            with connection:
                assert connection.recv(100) == f"{node.hostname} loopback-ok".encode()
            assert address == node.host


def test_processes_of_a_node_user_are_found_and_killed(clean_sim_cluster: SimulatedCluster) -> None:
    cluster = clean_sim_cluster
    node = cluster.nodes[2]
    done = ssh(cluster, node, "nohup sleep 300 >/dev/null 2>&1 & echo $!")
    assert done.returncode == 0, done.stderr
    sleeper = int(done.stdout)
    assert sleeper in cluster.processes_of(node)
    assert all(sleeper not in cluster.processes_of(other) for other in cluster.nodes if other != node)
    cluster.kill_node_processes(node)
    assert cluster.processes_of(node) == []
    fields = ledgers.stat_fields(sleeper)
    assert fields is None or fields[0] in ledgers.ENDED_STATES


def test_a_cut_link_partitions_the_node_until_restored(clean_sim_cluster: SimulatedCluster) -> None:
    cluster = clean_sim_cluster
    node, other = cluster.nodes[3], cluster.nodes[0]
    cluster.cut_link(node)
    with pytest.raises(OSError):
        socket.create_connection((node.host, node.port), timeout=0.5).close()
    assert ssh(cluster, other, "true").returncode == 0
    assert cluster.run_on(node, "hostname").stdout == f"{node.hostname}\n"  # inspection needs no network
    cluster.restore_link(node)
    deadline = time.monotonic() + HEAL_TIMEOUT_S
    while True:
        try:
            with connect(cluster, node) as client:
                assert execute(client, "hostname")[1] == f"{node.hostname}\n"
            break
        except OSError:
            assert time.monotonic() < deadline, f"{node.name} unreachable {HEAL_TIMEOUT_S} s after restore_link"


def test_reset_makes_nodes_as_built(sim_cluster: SimulatedCluster) -> None:
    node = sim_cluster.nodes[0]
    assert ssh(sim_cluster, node, "touch ~/left-over /tmp/left-over; nohup sleep 300 >/dev/null 2>&1 &").returncode == 0
    sim_cluster.cut_link(node)
    sim_cluster.reset()
    assert sim_cluster.processes_of(node) == []
    assert sim_cluster.run_on(node, "ls -A ~ /tmp").stdout.split() == ["/home/" + node.user + ":", ".ssh", "/tmp:"]
    assert ssh(sim_cluster, node, "true").returncode == 0


def test_node_options_give_nodes_without_python_or_with_an_old_one(
    make_sim_cluster: Callable[..., SimulatedCluster],
) -> None:
    options = {"node1": NodeOptions(NodePython.SYSTEM), "node2": NodeOptions(NodePython.OLD)}
    cluster = make_sim_cluster(3, with_python=False, node_options=options)
    missing, system, old = cluster.nodes
    assert [node.python for node in cluster.nodes] == [NodePython.MISSING, NodePython.SYSTEM, NodePython.OLD]
    with connect(cluster, missing) as client:
        assert execute(client, VERSION_PROBE)[0] == 127
        assert execute(client, "ls /usr/bin/python3* /bin/python3*")[0] != 0
    with connect(cluster, system) as client:
        assert execute(client, VERSION_PROBE)[0] == 0
    with connect(cluster, old) as client:
        assert execute(client, VERSION_PROBE) == (0, "(3, 8)\n", "")
        assert execute(client, "python3 --version") == (0, "Python 3.8.18\n", "")
        assert execute(client, "echo 'import sys; print(sys.version_info >= (3, 9))' | python3") == (0, "False\n", "")
        assert execute(client, "python3 -m platform")[0] == 0
        assert execute(client, "python3.11 -V")[0] == 127


def test_unknown_node_options_are_refused() -> None:
    with pytest.raises(ValueError, match="node_options names no such node: node7"):
        build_cluster(2, node_options={"node7": NodeOptions()})


def test_close_leaves_nothing_behind() -> None:
    netns_dir_before = ledgers.NETNS_DIR.exists()
    cluster = build_cluster(2)
    node = cluster.nodes[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.host = "elsewhere"  # type: ignore[misc]
    sleeper = int(ssh(cluster, node, "nohup sleep 300 >/dev/null 2>&1 & echo $!").stdout)
    lingering = connect(cluster, cluster.nodes[1])
    sshds = [cluster.sshd_pid(n) for n in cluster.nodes]
    token = cluster._ledger.token
    cluster.close()
    lingering.close()
    cluster.close()  # idempotent
    _assert_nothing_left(cluster, token, [sleeper, *sshds])
    assert ledgers.NETNS_DIR.exists() == netns_dir_before


def test_a_cluster_left_by_a_killed_session_is_reaped(sim_cluster: SimulatedCluster) -> None:
    session = subprocess.Popen(
        [sys.executable, "-c", "from tests.sshcluster import build_cluster; import sys; c = build_cluster(1); "
         "print(c._ledger.token, c.sshd_pid(c.nodes[0]), c.workdir, flush=True); sys.stdin.read()"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        token, sshd, workdir = session.stdout.readline().split()
        ledger = ledgers.Ledger.load(ledgers.STATE_DIR / f"{token}.json")
        assert pwd.getpwnam(ledger.users[0]) and Path(workdir).exists()
    finally:
        session.send_signal(signal.SIGKILL)  # as if the session's runner were killed
        session.wait()
    with ledgers.state_lock():
        reaped = ledgers.reap_stale()
    assert token in reaped or not ledger.path.exists()  # another session's build may have reaped it first
    _assert_nothing_left_of(ledger, [int(sshd)])
    assert not Path(workdir).exists()
    assert ssh(sim_cluster, sim_cluster.nodes[0], "true").returncode == 0  # a live session's cluster is kept


def _assert_nothing_left(cluster: SimulatedCluster, token: str, pids: list[int]) -> None:
    _assert_nothing_left_of(cluster._ledger, pids)
    assert not cluster.workdir.exists() or cluster._ledger.workdir is None
    for name in ("passwd", "group", "shadow", "gshadow", "subuid", "subgid"):
        assert token not in Path("/etc", name).read_text()


def _assert_nothing_left_of(ledger: ledgers.Ledger, pids: list[int]) -> None:
    for user in ledger.users:
        with pytest.raises(KeyError):
            pwd.getpwnam(user)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert all(name not in listed for name in ledger.netns)
    assert not any(Path("/sys/class/net", link).exists() for link in [ledger.bridge, *ledger.veths])
    for pid in pids:
        fields = ledgers.stat_fields(pid)
        assert fields is None or fields[0] in ledgers.ENDED_STATES, f"process {pid} still alive"
    assert ledger.token not in Path("/proc/self/mountinfo").read_text()
    assert not ledger.path.exists()
