"""`patas nodes add/remove`: changing the nodes under a running sweep."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from tests.cli.live_sweeps import START_TIMEOUT_S, gate, live, running_on, sweeps, wait_for  # noqa: F401 (fixture)
from tests.running import ENV, journal, patas

GATED_TASKS = ("--va", "i", "0", "6", "1")


def gated(tmp_path: Path) -> str:
    return f"echo \"on $PATAS_NODE_NAME\"; {gate(tmp_path)}"


def printing_on(lab: Path, node: str):
    """The status once a task on `node` has printed its first line there."""
    status = running_on(lab, node)
    if status is None or not any(t.node == node and t.last_line == f"on {node}" for t in status.running_tasks):
        return None
    return status


def nodes_of(lab: Path) -> Counter[str]:
    """How many done attempts each node has in the journal."""
    return Counter(r["node_name"] for r in journal(lab / "grid") if r["outcome"] == "done")


def test_a_node_added_during_a_run_gets_tasks(tmp_path, sweeps):
    lab = tmp_path / "pataslab"
    sweep = sweeps("--cmd", gated(tmp_path), *GATED_TASKS, "--node", "localhost", "1")
    wait_for(lambda: running_on(lab, "node0") or sweep.poll() is not None, START_TIMEOUT_S, "a task on node0")
    assert sweep.poll() is None, sweep.communicate()

    added = patas("nodes", "add", "grid", "--node", "localhost", "1", cwd=tmp_path)
    assert added.code == 0, added.stderr
    assert added.stdout == "Added node1: ready with 1 worker\n"
    status = wait_for(lambda: printing_on(lab, "node1"), START_TIMEOUT_S, "a task printing on node1")
    assert [(n.name, n.slots, n.state) for n in status.nodes] == [("node0", 1, "ready"), ("node1", 1, "ready")]

    (tmp_path / "go").touch()
    assert sweep.wait(60) == 0
    done = nodes_of(lab)
    assert done["node1"] >= 1 and done["node0"] + done["node1"] == 6, done
    records = [r for r in journal(lab / "grid") if r["node_name"] == "node1"]
    # Numbered after the run's nodes and workers, so the journal's numbering stays unique.
    assert {(r["node_in_lab"], r["worker_in_lab"], r["cluster_in_lab"]) for r in records} == {(1, 1, 1)}


def test_a_node_removed_with_drain_finishes_its_tasks_then_gets_none(tmp_path, sweeps):
    lab = tmp_path / "pataslab"
    sweep = sweeps("--cmd", gated(tmp_path), *GATED_TASKS, "--node", "localhost", "1", "--node", "localhost", "1")
    wait_for(lambda: running_on(lab, "node1") or sweep.poll() is not None, START_TIMEOUT_S, "a task on node1")
    assert sweep.poll() is None, sweep.communicate()

    removed = patas("nodes", "remove", "grid", "node1", "--drain", cwd=tmp_path)
    assert removed.code == 0, removed.stderr
    held = 2  # its slot's task and the one queued there for it (tasks wait on the gate: none ended)
    assert removed.stdout == f"node1: draining: it takes no new task, and its agent stops once the {held} tasks it holds have ended\n"
    states = {n.name: n.state for n in live(lab).nodes}
    assert states == {"node0": "ready", "node1": "draining"}

    (tmp_path / "go").touch()
    assert sweep.wait(60) == 0
    done = nodes_of(lab)
    assert done == {"node1": held, "node0": 6 - held}, done
    assert all(r["outcome"] == "done" for r in journal(lab / "grid"))  # its tasks ran to their end


def test_a_node_removed_without_drain_gives_its_tasks_to_the_others_at_no_cost(tmp_path, sweeps):
    lab = tmp_path / "pataslab"
    # One try per task: a removal that counted as a failed try would give the task up.
    sweep = sweeps("--cmd", gated(tmp_path), *GATED_TASKS, "--node", "localhost", "1", "--node", "localhost", "1", "--max-tries", "1")
    status = wait_for(lambda: printing_on(lab, "node1") or sweep.poll() is not None, START_TIMEOUT_S, "a task printing on node1")
    assert sweep.poll() is None, sweep.communicate()
    taken = next(t.task_id for t in status.running_tasks if t.node == "node1")

    removed = patas("nodes", "remove", "grid", "node1", cwd=tmp_path)
    assert removed.code == 0, removed.stderr
    assert removed.stdout == "node1: removed; the 2 tasks it held have gone back to the queue, for other nodes\n"
    assert [n.name for n in live(lab).nodes] == ["node0"]

    (tmp_path / "go").touch()
    assert sweep.wait(60) == 0, sweep.communicate()
    records = journal(lab / "grid")
    assert nodes_of(lab) == {"node0": 6}
    assert [r["outcome"] for r in records] == ["done"] * 6  # nothing failed: the killed attempts left no record
    assert next(r["attempt"] for r in records if r["task_id"] == taken) == 2
    assert (lab / "grid" / str(taken) / "attempt-1.stdout").read_text() == "on node1\n"


def test_the_last_node_and_an_unknown_node_cannot_be_removed(tmp_path, sweeps):
    lab = tmp_path / "pataslab"
    sweep = sweeps("--cmd", gated(tmp_path), *GATED_TASKS, "--node", "localhost", "1")
    wait_for(lambda: running_on(lab, "node0") or sweep.poll() is not None, START_TIMEOUT_S, "a task on node0")
    last = patas("nodes", "remove", "grid", "node0", "--drain", cwd=tmp_path)
    assert (last.code, last.stderr) == (
        1, "Error: pataslab/grid: node0 is the run's last node: add another first (patas nodes add), or stop the run\n"
    )
    unknown = patas("nodes", "remove", "grid", "nod0", cwd=tmp_path)
    assert (unknown.code, unknown.stderr) == (
        1, "Error: pataslab/grid: no node 'nod0' runs tasks in this run (did you mean 'node0'?) (its nodes: node0)\n"
    )
    taken = patas("nodes", "add", "grid", "--cluster", str(_cluster(tmp_path, "node0")), cwd=tmp_path)
    assert (taken.code, taken.stdout) == (1, "")
    assert taken.stderr == "Not added: node0: the run has a node of that name already (name it otherwise in the cluster file)\n"
    assert live(lab).nodes[0].state == "ready"


def _cluster(folder: Path, name: str) -> Path:
    path = folder / "more.yaml"
    path.write_text(f"name: more\nnodes:\n  - name: {name}\n    hostname: localhost\n    workers: 1\n")
    return path


@pytest.mark.cluster
@pytest.mark.skipif(os.geteuid() != 0, reason="a simulated cluster needs root (users, namespaces, mounts)")
def test_an_ssh_node_added_during_a_run_gets_tasks(clean_sim_cluster, tmp_path, sweeps):
    cluster = clean_sim_cluster
    first, second = cluster.nodes[0], cluster.nodes[1]
    lab = tmp_path / "pataslab"
    ssh = ("--ssh-config", str(cluster.ssh_config_path))
    # Each node has a private home: the tasks wait for a file the test makes there, on each node.
    command = 'echo "on $PATAS_NODE_NAME"; while [ ! -e ~/go ]; do sleep 0.02; done'
    sweep = sweeps("--cmd", command, *GATED_TASKS, "--workdir", "~", "--node", first.name, "1", *ssh)
    wait_for(lambda: running_on(lab, "node0") or sweep.poll() is not None, START_TIMEOUT_S, "a task on node0")
    assert sweep.poll() is None, sweep.communicate()

    added = patas("nodes", "add", "grid", "--node", second.name, "1", cwd=tmp_path)
    assert (added.code, added.stdout) == (0, "Added node1: ready with 1 worker\n"), added.stderr
    wait_for(lambda: printing_on(lab, "node1"), START_TIMEOUT_S, "a task printing on the SSH node")
    for node in (first, second):
        cluster.run_on(node, "touch ~/go")
    assert sweep.wait(60) == 0, sweep.communicate()
    hosts = Counter(r["hostname"] for r in journal(lab / "grid") if r["outcome"] == "done")
    assert hosts[second.name] >= 1 and sum(hosts.values()) == 6, hosts


def shipping_sweep(tmp_path: Path, sweeps, *nodes: str) -> tuple[Path, Path, object]:
    """A gated sweep that ships ./code and prints the folder each task runs in, started on `nodes`."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "task.sh").write_text('echo "on $PATAS_NODE_NAME in $PWD"; while [ ! -e ~/go ]; do sleep 0.02; done\n')
    sweep = sweeps("--ship", ".", "--cmd", "bash task.sh", *GATED_TASKS, *nodes, cwd=code)
    return code, code / "pataslab", sweep


def shipped_to(lab: Path, node: str) -> list[dict]:
    """The done records of `node`, each with the code digest the journal recorded for it."""
    return [r for r in journal(lab / "grid") if r["outcome"] == "done" and r["node_name"] == node]


def test_a_node_added_to_a_run_that_ships_its_code_runs_it_in_its_copy(tmp_path, sweeps, monkeypatch):
    monkeypatch.setitem(ENV, "PATAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(ENV, "HOME", str(tmp_path))  # the tasks wait for ~/go
    code, lab, sweep = shipping_sweep(tmp_path, sweeps, "--node", "localhost", "1")
    wait_for(lambda: running_on(lab, "node0") or sweep.poll() is not None, START_TIMEOUT_S, "a task on node0")
    assert sweep.poll() is None, sweep.communicate()
    (code / "task.sh").write_text("echo edited after the snapshot\n")  # the copy is what runs

    added = patas("nodes", "add", "grid", "--node", "localhost", "1", cwd=code)
    assert (added.code, added.stdout) == (0, "Added node1: ready with 1 worker\n"), added.stderr
    wait_for(lambda: printing_on_in(lab, "node1"), START_TIMEOUT_S, "a task printing on node1")
    (tmp_path / "go").touch()
    assert sweep.wait(60) == 0, sweep.communicate()
    records = shipped_to(lab, "node0") + shipped_to(lab, "node1")
    assert len(records) == 6 and shipped_to(lab, "node1"), nodes_of(lab)
    assert len({r["code"]["digest"] for r in records}) == 1
    for record in records:
        stdout = (lab / "grid" / str(record["task_id"]) / "stdout").read_text()
        assert stdout.startswith(f"on {record['node_name']} in {tmp_path / 'cache' / 'snapshots'}/"), stdout


def printing_on_in(lab: Path, node: str):
    """The status once a task on `node` has printed its first line (the folder it runs in)."""
    status = running_on(lab, node)
    if status is None or not any(t.node == node and t.last_line.startswith(f"on {node} in ") for t in status.running_tasks):
        return None
    return status


@pytest.mark.cluster
@pytest.mark.skipif(os.geteuid() != 0, reason="a simulated cluster needs root (users, namespaces, mounts)")
def test_an_ssh_node_added_to_a_run_that_ships_its_code_gets_the_code_first(clean_sim_cluster, tmp_path, sweeps):
    cluster = clean_sim_cluster
    first, second, third = cluster.nodes[0], cluster.nodes[1], cluster.nodes[2]
    ssh = ("--ssh-config", str(cluster.ssh_config_path))
    code, lab, sweep = shipping_sweep(tmp_path, sweeps, "--node", first.name, "1", *ssh)
    wait_for(lambda: running_on(lab, "node0") or sweep.poll() is not None, START_TIMEOUT_S, "a task on node0")
    assert sweep.poll() is None, sweep.communicate()
    # The third node cannot keep the code: a file where its blob store should be.
    assert cluster.run_on(third, "mkdir -p ~/.cache/patas && touch ~/.cache/patas/blobs").returncode == 0

    added = patas("nodes", "add", "grid", "--node", second.name, "1", "--node", third.name, "1", cwd=code)
    assert added.code == 1, added.stdout + added.stderr
    assert "Added node1: ready with 1 worker\n" in added.stdout, added.stdout
    assert "Not added: node2: cannot keep the code in ~/.cache/patas: " in added.stdout + added.stderr, added.stdout + added.stderr
    wait_for(lambda: printing_on_in(lab, "node1"), START_TIMEOUT_S, "a task printing on the SSH node")
    for node in (first, second):
        cluster.run_on(node, "touch ~/go")
    assert sweep.wait(60) == 0, sweep.communicate()
    assert set(nodes_of(lab)) == {"node0", "node1"} and sum(nodes_of(lab).values()) == 6, nodes_of(lab)
    for record in shipped_to(lab, "node1"):
        stdout = (lab / "grid" / str(record["task_id"]) / "stdout").read_text()
        assert stdout.startswith(f"on node1 in {second.home}/.cache/patas/snapshots/{record['code']['digest']}"), stdout
