"""`patas explore --ship` across a simulated cluster: the program exists only here (the nodes
have private homes and /tmp, and the checkout is hidden from them), so a task finds it only in
the node's copy of the shipped snapshot; what each node is sent is counted from the lines the
run prints (`node1: code <digest>: sent N of M files (B)`)."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.running import ENV, journal, patas, processes_with

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.geteuid() != 0, reason="a simulated cluster needs root (users, namespaces, mounts)"),
]

SENT = re.compile(r"^(node\d+): code ([0-9a-f]{12}): sent (\d+) of (\d+) files \((.+)\)$", re.M)
ALREADY = re.compile(r"^(node\d+): code ([0-9a-f]{12}) already there \((\d+) files\)$", re.M)
FILES_IN_PROJECT = 4  # main.py, lib/version.txt, data/big.bin, .gitignore


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """This machine's cache (file digests, local snapshots) in the test's folder, not in ~."""
    monkeypatch.setitem(ENV, "PATAS_CACHE", str(tmp_path / "cache"))


def make_project(folder: Path) -> Path:
    project = folder / "project"
    (project / "lib").mkdir(parents=True)
    (project / "data").mkdir()
    main = project / "main.py"
    main.write_text(
        "#!/usr/bin/env python3\nimport socket, sys\n"
        "version = open('lib/version.txt').read().strip()\n"
        "print(socket.gethostname(), version, sys.argv[1])\n"
    )
    main.chmod(0o755)
    (project / "lib/version.txt").write_text("v1\n")
    (project / "data/big.bin").write_bytes(os.urandom(300_000))
    (project / "scratch.log").write_text("left out by .gitignore\n")
    (project / ".gitignore").write_text("*.log\n")
    return project


def cluster_args(cluster) -> list[str]:  # type: ignore[no-untyped-def]
    args = ["--ssh-config", str(cluster.ssh_config_path)]
    for node in cluster.nodes:
        args += ["--node", node.name, "1"]
    return args


def explore(project: Path, cluster, *extra: str):  # type: ignore[no-untyped-def]
    command = ["explore", "--ship", ".", "--cmd", "./main.py {i}", "--va", "i", "0", "8", "1", *cluster_args(cluster), "-y", *extra]
    return patas(*command, cwd=project, timeout=180)


def test_the_program_exists_only_here_and_runs_on_every_node_from_its_copy(clean_sim_cluster, tmp_path):
    cluster = clean_sim_cluster
    project = make_project(tmp_path)
    run = explore(project, cluster)
    assert run.code == 0, run.stderr
    sent = SENT.findall(run.stderr)
    assert sorted(s[0] for s in sent) == [n.name for n in cluster.nodes]
    assert {(s[2], s[3]) for s in sent} == {(str(FILES_IN_PROJECT), str(FILES_IN_PROJECT))}  # not scratch.log
    outputs = [(project / f"pataslab/grid/{i}/stdout").read_text().split() for i in range(8)]
    assert [o[1:] for o in outputs] == [["v1", str(i)] for i in range(8)]
    assert {o[0] for o in outputs} == {n.name for n in cluster.nodes}  # every node ran some
    records = journal(project / "pataslab/grid")
    digests = {r["code"]["digest"] for r in records}
    assert len(digests) == 1 and sent[0][1] == next(iter(digests))[:12]
    # The node's copy is read-only, its files hard links to the blobs.
    node = cluster.nodes[0]
    listing = cluster.run_on(node, f"stat -c '%A %h %n' ~/.cache/patas/snapshots/{next(iter(digests))}/main.py ~/.cache/patas/blobs/*")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].startswith("-r-xr-xr-x 2 ") and len(lines) == 1 + FILES_IN_PROJECT
    assert all(line.split()[0] in ("-r--r--r--", "-r-xr-xr-x") for line in lines)


def test_a_node_that_cannot_take_the_code_is_left_out_and_the_others_run_every_task(clean_sim_cluster, tmp_path):
    cluster = clean_sim_cluster
    broken = cluster.nodes[-1]
    # A file where its blob store should be: the node cannot keep the code.
    assert cluster.run_on(broken, "mkdir -p ~/.cache/patas && touch ~/.cache/patas/blobs").returncode == 0
    project = make_project(tmp_path)
    run = explore(project, cluster)
    assert run.code == 0, run.stderr
    assert re.search(rf"^{broken.name}: cannot take the code: cannot keep the code in ~/\.cache/patas: .+ \(left out of this run\)$", run.stderr, re.M), run.stderr
    assert sorted(s[0] for s in SENT.findall(run.stderr)) == [n.name for n in cluster.nodes if n is not broken]
    records = journal(project / "pataslab/grid")
    assert sorted(r["task_id"] for r in records if r["outcome"] == "done") == list(range(8))
    assert broken.name not in {r["node_name"] for r in records}


def test_a_run_whose_code_no_node_can_take_fails_before_it_starts(clean_sim_cluster, tmp_path):
    cluster = clean_sim_cluster
    for node in cluster.nodes:
        assert cluster.run_on(node, "mkdir -p ~/.cache/patas && touch ~/.cache/patas/blobs").returncode == 0
    project = make_project(tmp_path)
    run = explore(project, cluster)
    assert run.code == 1, run.stderr
    [line] = run.stderr.splitlines()[-1:]
    assert line.startswith("Error: --ship: no node could take the code: node0: cannot keep the code in ~/.cache/patas: "), run.stderr
    assert all(f"{n.name}: cannot keep the code" in line for n in cluster.nodes), line
    assert not (project / "pataslab/grid/journal.jsonl").exists() and not (project / "pataslab/grid/experiment.yaml").exists()


def test_a_second_run_sends_only_the_edited_file_and_an_unchanged_one_nothing(clean_sim_cluster, tmp_path):
    cluster = clean_sim_cluster
    project = make_project(tmp_path)
    assert explore(project, cluster).code == 0
    (project / "lib/version.txt").write_text("v2\n")
    second = explore(project, cluster, "--redo")
    assert second.code == 0, second.stderr
    sent = SENT.findall(second.stderr)
    assert sorted(s[0] for s in sent) == [n.name for n in cluster.nodes]
    assert {(s[2], s[3], s[4]) for s in sent} == {("1", str(FILES_IN_PROJECT), "3 B")}
    assert {(project / f"pataslab/grid/{i}/stdout").read_text().split()[1] for i in range(8)} == {"v2"}
    third = explore(project, cluster, "--redo")
    assert third.code == 0, third.stderr
    assert SENT.findall(third.stderr) == []
    assert sorted(a[0] for a in ALREADY.findall(third.stderr)) == [n.name for n in cluster.nodes]
    # Provenance: each attempt says which code it ran; parse groups by it.
    records = journal(project / "pataslab/grid")
    by_version = {}
    for record in records:
        by_version.setdefault(record["code"]["digest"], set()).add(record["attempt"])
    assert len(by_version) == 2
    parsed = patas("parse", "-e", "pataslab/grid", "-p", "version", r"node\d (v\d)", cwd=project)
    assert parsed.code == 0, parsed.stderr
    with open(project / "pataslab/grid/grid.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    assert {r["out_version"] for r in rows} == {"v2"} and len({r["code_digest"] for r in rows}) == 1
    assert rows[0]["code_digest"] in by_version and rows[0]["code_commit"] == ""


def test_through_a_tunnel_the_code_goes_over_the_same_connection(clean_sim_cluster, tmp_path):
    cluster = clean_sim_cluster
    project = make_project(tmp_path)
    run = explore(project, cluster, "--tunnel")
    assert run.code == 0, run.stderr
    assert len(SENT.findall(run.stderr)) == len(cluster.nodes)
    assert {(project / f"pataslab/grid/{i}/stdout").read_text().split()[1] for i in range(8)} == {"v1"}


POOL = "shippool"


def test_a_pools_nodes_get_the_code_over_ssh_opened_for_the_run(clean_sim_cluster, tmp_path):
    cluster = clean_sim_cluster
    project = make_project(tmp_path)
    env = {**ENV, "PATAS_POOLS": str(tmp_path / "pools")}
    pool = ["--name", POOL]
    nodes = [arg for node in cluster.nodes[:2] for arg in ("--node", node.name, "1")]
    ssh = ["--ssh-config", str(cluster.ssh_config_path)]

    def patas_env(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "patas", *args], env=env, cwd=project, capture_output=True, text=True, timeout=180)

    try:
        up = patas_env("pool", "up", *pool, *ssh, *nodes)
        assert up.returncode == 0, up.stderr
        run = patas_env("explore", "--pool", POOL, *ssh, "--ship", ".", "--cmd", "./main.py {i}", "--va", "i", "0", "6", "1", "-y")
        assert run.returncode == 0, run.stderr
        assert sorted(s[0] for s in SENT.findall(run.stderr)) == [n.name for n in cluster.nodes[:2]]
        outputs = [(project / f"pataslab/grid/{i}/stdout").read_text().split() for i in range(6)]
        assert {o[1] for o in outputs} == {"v1"} and {o[0] for o in outputs} <= {n.name for n in cluster.nodes[:2]}
    finally:
        patas_env("pool", "down", *pool)
        for pid in processes_with(str(tmp_path / "pools")):
            os.kill(pid, signal.SIGKILL)
