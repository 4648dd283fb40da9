"""Agent pools: started once, serving sweep after sweep, sweeps at once, restarts, drain, revoke."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from patas.agent import supervisor
from patas.common import protocol
from patas.common.agent_config import AgentConfig
from patas.common.bounds import HANDSHAKE_TIMEOUT_S
from patas.common.protocol import Credit, Finished, Hello, Output, Welcome
from tests.running import ENV, done_ids, exactly_once, processes_with
from tests.zmtp import MIB, claim_four_gigabytes, resident_bytes

POOL = "testpool"


@pytest.fixture
def pools(tmp_path, monkeypatch):
    """A private pools folder for the test; whatever pool it holds is taken down afterwards."""
    root = tmp_path / "pools"
    env = {**ENV, "PATAS_POOLS": str(root)}
    yield root, env
    subprocess.run([sys.executable, "-m", "patas", "pool", "down", "--name", POOL], env=env, capture_output=True, timeout=60)
    for pid in processes_with(str(root)):
        os.kill(pid, signal.SIGKILL)


def run(env, cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "patas", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def sweep(env, cwd: Path, tag: str, count: int = 40) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(exist_ok=True)
    return run(env, cwd, "explore", "--pool", POOL, "--cmd", f"sleep 0.02; echo {tag} {{i}}", "--va", "i", "0", str(count), "1", "-y")


def agent_pids(root: Path) -> list[int]:
    """The pool's agents, without their slots' supervisors (forks that share their command line)."""
    found = processes_with(f"{root}/{POOL}/agents/")
    return [pid for pid in found if _comm(pid) != supervisor.NAME]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


def wait_for(condition, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_pool_serves_sweeps_in_a_row_at_once_and_across_a_daemon_restart(pools, tmp_path):
    root, env = pools
    up = run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "2")
    assert up.returncode == 0, up.stderr
    assert f"Pool {POOL}: 1/1 agents ready, 2 workers" in up.stderr
    (agent,) = agent_pids(root)
    assert oct((root / POOL).stat().st_mode)[-3:] == "700"
    assert oct((root / POOL / "agents" / "node0.json").stat().st_mode)[-3:] == "600"

    first = sweep(env, tmp_path / "one", "one")
    assert first.returncode == 0, first.stderr
    exactly_once(tmp_path / "one/pataslab/grid", {i: f"one {i}\n" for i in range(40)})

    at_once = [
        subprocess.Popen([sys.executable, "-m", "patas", "explore", "--pool", POOL, "--cmd", f"sleep 0.02; echo {tag} {{i}}",
                          "--va", "i", "0", "40", "1", "-y"], env=env, cwd=tmp_path / tag, stderr=subprocess.PIPE, text=True)
        for tag in ("two", "three") if (tmp_path / tag).mkdir() is None
    ]  # fmt: skip
    for process in at_once:
        assert process.wait(120) == 0, process.stderr.read()
    for tag in ("two", "three"):
        exactly_once(tmp_path / tag / "pataslab/grid", {i: f"{tag} {i}\n" for i in range(40)})

    daemon = int((root / POOL / "daemon.pid").read_text())
    os.kill(daemon, signal.SIGKILL)
    again = run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "2")
    assert again.returncode == 0, again.stderr
    assert agent_pids(root) == [agent]  # the agent reconnected to the new daemon; none was added
    after = sweep(env, tmp_path / "four", "four")
    assert after.returncode == 0, after.stderr
    assert done_ids(tmp_path / "four/pataslab/grid") == list(range(40))


def test_an_agent_restarted_by_its_supervisor_rejoins(pools, tmp_path):
    root, env = pools
    assert run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "1").returncode == 0
    (agent,) = agent_pids(root)
    os.kill(agent, signal.SIGKILL)
    config = root / POOL / "agents" / "node0.json"
    # What systemd's Restart=always does:
    restarted = subprocess.Popen([sys.executable, "-m", "patas", "agent", "--config", str(config)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    wait_for(lambda: "ready" in run(env, tmp_path, "pool", "status", "--name", POOL).stdout.split("\n")[1].split()[2:3])
    result = sweep(env, tmp_path / "after", "after", 10)
    assert result.returncode == 0, result.stderr
    assert done_ids(tmp_path / "after/pataslab/grid") == list(range(10))
    run(env, tmp_path, "pool", "down", "--name", POOL)
    assert restarted.wait(15) == 0


def test_drain_down_and_revoke_leave_nothing_running(pools, tmp_path):
    root, env = pools
    assert run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "1").returncode == 0
    (agent,) = agent_pids(root)
    drained = run(env, tmp_path, "pool", "drain", "--name", POOL)
    assert drained.returncode == 0, drained.stderr
    wait_for(lambda: agent_pids(root) == [])
    assert "stopped" in run(env, tmp_path, "pool", "status", "--name", POOL).stdout

    assert run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "1").returncode == 0
    (agent,) = agent_pids(root)
    config = (root / POOL / "agents" / "node0.json").read_bytes()
    revoked = run(env, tmp_path, "pool", "revoke", "--name", POOL, "node0")
    assert revoked.returncode == 0, revoked.stderr
    wait_for(lambda: agent_pids(root) == [])
    # The revoked key no longer opens the pool, even for an agent started by hand.
    stale = tmp_path / "stale.json"
    stale.write_bytes(config)
    stale.chmod(0o600)
    intruder = subprocess.Popen([sys.executable, "-m", "patas", "agent", "--config", str(stale)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: "refused a connection with an unknown key" in (root / POOL / "daemon.log").read_text(), 20)
        status = run(env, tmp_path, "pool", "status", "--name", POOL).stdout
        assert "ready" not in status
    finally:
        intruder.kill()
        intruder.wait()

    down = run(env, tmp_path, "pool", "down", "--name", POOL)
    assert down.returncode == 0, down.stderr
    assert processes_with(str(root)) == []
    assert not (root / POOL / "daemon.pid").exists()


def test_pool_errors_are_one_line(pools, tmp_path):
    _, env = pools
    missing = run(env, tmp_path, "explore", "--pool", "nosuch", "--cmd", "echo {i}", "--va", "i", "0", "2", "1", "-y")
    assert missing.returncode == 1
    assert missing.stderr == "Error: no pool named 'nosuch' (start one with `patas pool up --name nosuch --node ...`)\n"
    mixed = run(env, tmp_path, "explore", "--pool", POOL, "--node", "localhost", "--cmd", "echo", "-y")
    assert mixed.stderr == "Error: --pool runs on the pool's agents; leave out --cluster and --node\n"
    config = tmp_path / "open.json"
    config.write_text("{}")
    config.chmod(0o644)
    loose = run(env, tmp_path, "agent", "--config", str(config))
    assert loose.returncode == 1
    assert loose.stderr == f"Error: {config}: readable by others; it holds a secret key (chmod 600 {config})\n"


@pytest.mark.cluster
@pytest.mark.skipif(os.geteuid() != 0, reason="a simulated cluster needs root")
def test_a_pool_on_ssh_nodes_outlives_the_ssh_session_and_goes_down_cleanly(pools, clean_sim_cluster, tmp_path):
    root, env = pools
    cluster = clean_sim_cluster
    nodes: list[str] = []
    for node in cluster.nodes:
        nodes += ["--node", node.name, "1"]
    up = run(env, tmp_path, "pool", "up", "--name", POOL, "--ssh-config", str(cluster.ssh_config_path), *nodes)
    assert up.returncode == 0, up.stderr
    assert f"Pool {POOL}: 4/4 agents ready, 4 workers" in up.stderr
    assert all(cluster.processes_of(node) for node in cluster.nodes)  # agents kept running after SSH closed

    (tmp_path / "work").mkdir()
    result = run(env, tmp_path / "work", "explore", "--pool", POOL, "--cmd", "sleep 0.1; hostname; echo {i}",
                 "--va", "i", "0", "24", "1", "--workdir", "~", "-y")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lab = tmp_path / "work/pataslab/grid"
    hosts = {(lab / str(i) / "stdout").read_text().split()[0] for i in range(24)}
    assert hosts == {node.hostname for node in cluster.nodes}

    assert run(env, tmp_path, "pool", "down", "--name", POOL).returncode == 0
    deadline = time.monotonic() + 15
    while any(cluster.processes_of(node) for node in cluster.nodes) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {node.name: cluster.processes_of(node) for node in cluster.nodes if cluster.processes_of(node)} == {}


def test_draining_an_agent_mid_run_moves_its_future_tasks_to_the_others(pools, tmp_path):
    root, env = pools
    up = run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "1", "--node", "127.0.0.1", "1")
    assert up.returncode == 0 and "2/2 agents ready" in up.stderr, up.stderr
    (tmp_path / "work").mkdir()
    sweep_process = subprocess.Popen(
        [sys.executable, "-m", "patas", "explore", "--pool", POOL, "--cmd", "sleep 0.2; echo $PATAS_NODE_NAME {i}",
         "--va", "i", "0", "40", "1", "--agent-timeout", "2", "-y"],
        env=env, cwd=tmp_path / "work", stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lab = tmp_path / "work/pataslab/grid"
    wait_for(lambda: len(done_ids(lab)) >= 6)
    assert run(env, tmp_path, "pool", "drain", "--name", POOL, "node0").returncode == 0
    _, stderr = sweep_process.communicate(timeout=120)
    assert sweep_process.returncode == 0, stderr
    assert "node0: lost" in stderr
    exactly_once(lab, {i: (lab / str(i) / "stdout").read_text() for i in range(40)})
    outputs = [(lab / str(i) / "stdout").read_text().split() for i in range(40)]
    assert [int(out[1]) for out in outputs] == list(range(40))
    last_on_node0 = max(i for i, out in enumerate(outputs) if out[0] == "node0")
    assert any(out[0] == "node1" for out in outputs[last_on_node0:])
    status = run(env, tmp_path, "pool", "status", "--name", POOL).stdout
    assert re.search(r"node0 .* stopped", status) and re.search(r"node1 .* ready", status), status


def test_an_agent_cannot_report_output_or_ends_for_another_agents_tasks(pools, tmp_path):
    root, env = pools
    up = run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "1", "--node", "127.0.0.1", "1")
    assert up.returncode == 0 and "2/2 agents ready" in up.stderr, up.stderr
    (tmp_path / "work").mkdir()
    sweep_process = subprocess.Popen(
        [sys.executable, "-m", "patas", "explore", "--pool", POOL, "--agent-timeout", "2", "-y",
         "--cmd", f"until [ -e {tmp_path}/GO ]; do sleep 0.02; done; echo $PATAS_NODE_NAME {{i}}", "--va", "i", "0", "4", "1"],
        env=env, cwd=tmp_path / "work", stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: all(_running(env, tmp_path).get(node, 0) >= 1 for node in ("node0", "node1")))
        # node1 is taken over: its agent dies and someone holding its real credentials speaks.
        config_path = root / POOL / "agents" / "node1.json"
        for pid in processes_with(str(config_path)):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: processes_with(str(config_path)) == [])
        _forge_every_lease(AgentConfig.from_line(config_path.read_bytes()))
    finally:
        (tmp_path / "GO").touch()
    _, stderr = sweep_process.communicate(timeout=120)
    assert sweep_process.returncode == 0, stderr
    lab = tmp_path / "work/pataslab/grid"
    exactly_once(lab, {i: (lab / str(i) / "stdout").read_text() for i in range(4)})
    outputs = [(lab / str(i) / "stdout").read_text() for i in range(4)]
    assert all(re.fullmatch(rf"node[01] {i}\n", out) for i, out in enumerate(outputs)), outputs


def _running(env, cwd: Path) -> dict[str, int]:
    rows = [line.split() for line in run(env, cwd, "pool", "status", "--name", POOL).stdout.splitlines()[1:]]
    return {row[0]: int(row[4]) for row in rows if len(row) > 4 and row[4].isdigit()}


def _forge_every_lease(config: AgentConfig) -> None:
    """Say hello with `config`, then claim output and an end for every lease the pool has given."""
    context = zmq.Context()
    forger = context.socket(zmq.DEALER)
    forger.setsockopt(zmq.IDENTITY, config.agent_id.encode())
    assert config.keys is not None
    forger.curve_serverkey = config.keys.server_public.encode()
    forger.curve_publickey = config.keys.public.encode()
    forger.curve_secretkey = config.keys.secret.encode()
    forger.connect(config.broker_address)
    try:
        forger.send_multipart(protocol.encode(Hello(protocol.PROTOCOL_VERSION, config.agent_id, "forger", 1, os.getpid())))
        assert isinstance(_next(forger, Welcome), Welcome)
        for lease in range(1, 20):
            forger.send_multipart(protocol.encode(Output(lease, protocol.STDOUT, b"forged\n")))
            forger.send_multipart(protocol.encode(Finished(lease, 0, 0, 0.0, 1.0, False, "", b"forged\n", b"")))
        # The pool answers output for a lease nobody holds with a credit: once it comes, the
        # daemon has handled every forged message sent before.
        forger.send_multipart(protocol.encode(Output(10**9, protocol.STDOUT, b"x")))
        assert isinstance(_next(forger, Credit), Credit)
    finally:
        forger.close(0)
        context.term()


def _next(socket: zmq.Socket, kind: type) -> object:
    """The next message of type `kind` (heartbeats and others are skipped)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if socket.poll(1000):
            message = protocol.decode(socket.recv_multipart())
            if isinstance(message, kind):
                return message
    raise AssertionError(f"no {kind.__name__} from the pool")


def test_strangers_at_the_pool_port_cost_the_daemon_no_memory_and_are_cut_off(pools, tmp_path):
    root, env = pools
    assert run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "1").returncode == 0
    daemon = int((root / POOL / "daemon.pid").read_text())
    port = json.loads((root / POOL / "pool.json").read_text())["port"]
    silent = socket.create_connection(("127.0.0.1", port))
    before = resident_bytes(daemon)
    strangers = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    for stranger in strangers:
        claim_four_gigabytes(stranger, as_server=False)
    growth = resident_bytes(daemon) - before
    assert growth < 48 * MIB, f"the pool daemon grew by {growth // MIB} MiB"
    silent.settimeout(HANDSHAKE_TIMEOUT_S + 3)
    try:
        while silent.recv(4096):
            pass  # the daemon's greeting, then end of file
    except ConnectionResetError:
        pass
    for stranger in [silent, *strangers]:
        stranger.close()
    result = sweep(env, tmp_path / "after", "after", 4)
    assert result.returncode == 0, result.stderr
    assert done_ids(tmp_path / "after/pataslab/grid") == list(range(4))


def test_pool_up_bind_sets_where_it_listens_and_issue_warns_of_another_host(pools, tmp_path):
    root, env = pools
    port = _free_port()
    up = run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "1", "--bind", f"127.0.0.1:{port}")
    assert up.returncode == 0, up.stderr
    assert json.loads((root / POOL / "pool.json").read_text()) == {"bind_hosts": ["127.0.0.1"], "port": port}
    good = run(env, tmp_path, "pool", "issue", "--name", POOL, "mine", "--host", "127.0.0.1", "-o", str(tmp_path / "a.json"))
    assert good.returncode == 0 and "Warning" not in good.stderr, good.stderr
    bad = run(env, tmp_path, "pool", "issue", "--name", POOL, "far", "--host", "10.9.9.9", "-o", str(tmp_path / "b.json"))
    assert bad.returncode == 0
    assert "Warning: pool testpool listens on 127.0.0.1, not on 10.9.9.9" in bad.stderr
    assert "--bind 10.9.9.9" in bad.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sweep_in_background(env, cwd: Path, count: int, *options: str) -> subprocess.Popen[str]:
    cwd.mkdir()
    # Tasks from 3 on wait for the file GO, so the test acts while the sweep is under way.
    command = "[ {i} -lt 3 ] || until [ -e ../GO ]; do sleep 0.02; done; sleep 0.05; echo $PATAS_NODE_NAME {i}"
    return subprocess.Popen(
        [sys.executable, "-m", "patas", "explore", "--pool", POOL, "--cmd", command, "--va", "i", "0", str(count), "1", "-y", *options],
        env=env, cwd=cwd, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_sweep_goes_on_when_the_pools_only_agent_is_killed_and_restarted(pools, tmp_path):
    root, env = pools
    assert run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "2").returncode == 0
    sweep_process = _sweep_in_background(env, tmp_path / "work", 40, "--agent-timeout", "2")
    lab = tmp_path / "work/pataslab/grid"
    wait_for(lambda: len(done_ids(lab)) >= 3)
    (agent,) = agent_pids(root)
    os.kill(agent, signal.SIGKILL)
    wait_for(lambda: not agent_pids(root))
    (tmp_path / "GO").touch()
    # What systemd's Restart=always does, a moment later:
    restarted = subprocess.Popen([sys.executable, "-m", "patas", "agent", "--config", str(root / POOL / "agents" / "node0.json")],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    _, stderr = sweep_process.communicate(timeout=120)
    assert sweep_process.returncode == 0, stderr
    assert "node0: lost" in stderr and "node0: joined the run" in stderr, stderr
    exactly_once(lab, {i: f"node0 {i}\n" for i in range(40)})
    run(env, tmp_path, "pool", "down", "--name", POOL)
    assert restarted.wait(15) == 0


def test_a_sweep_takes_the_agents_that_join_the_pool_after_it_started(pools, tmp_path):
    root, env = pools
    assert run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "1").returncode == 0
    sweep_process = _sweep_in_background(env, tmp_path / "work", 40)
    lab = tmp_path / "work/pataslab/grid"
    wait_for(lambda: len(done_ids(lab)) >= 3)
    more = run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "1", "--node", "127.0.0.1", "1")
    assert more.returncode == 0 and "2/2 agents ready" in more.stderr, more.stderr
    wait_for(lambda: _running(env, tmp_path).get("node1", 0) >= 1)  # the sweep borrowed the newcomer
    (tmp_path / "GO").touch()
    _, stderr = sweep_process.communicate(timeout=120)
    assert sweep_process.returncode == 0, stderr
    outputs = {i: (lab / str(i) / "stdout").read_text() for i in range(40)}
    exactly_once(lab, outputs)
    assert any(text.startswith("node1 ") for text in outputs.values()), "the newcomer should have run tasks"
    assert all(text.split()[1] == str(i) for i, text in outputs.items())


def test_a_sweep_that_ships_its_code_ships_it_to_the_agents_that_join_the_pool(pools, tmp_path):
    root, env = pools
    env = {**env, "PATAS_CACHE": str(tmp_path / "cache")}
    assert run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "1").returncode == 0
    work = tmp_path / "work"
    work.mkdir()
    go = tmp_path / "GO"
    (work / "task.sh").write_text(f'[ "$1" -lt 3 ] || until [ -e {go} ]; do sleep 0.02; done; echo "$PATAS_NODE_NAME $1 $PWD"\n')
    command = ["explore", "--pool", POOL, "--ship", ".", "--cmd", "bash task.sh {i}", "--va", "i", "0", "40", "1", "-y"]
    sweep_process = subprocess.Popen([sys.executable, "-m", "patas", *command], env=env, cwd=work, stderr=subprocess.PIPE, text=True)
    lab = work / "pataslab/grid"
    wait_for(lambda: len(done_ids(lab)) >= 3)
    more = run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "1", "--node", "127.0.0.1", "1")
    assert more.returncode == 0 and "2/2 agents ready" in more.stderr, more.stderr
    wait_for(lambda: _running(env, tmp_path).get("node1", 0) >= 1)  # the newcomer, once it has the code
    go.touch()
    _, stderr = sweep_process.communicate(timeout=120)
    assert sweep_process.returncode == 0, stderr
    outputs = {i: (lab / str(i) / "stdout").read_text().split() for i in range(40)}
    assert any(node == "node1" for node, _, _ in outputs.values()), "the newcomer should have run tasks"
    assert all(i == int(task) for i, (_, task, _) in outputs.items())
    assert len({folder for _, _, folder in outputs.values()}) == 1, "every task ran in the same shipped copy"
    assert next(iter(outputs.values()))[2].startswith(f"{tmp_path / 'cache' / 'snapshots'}/")
