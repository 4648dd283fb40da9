"""A search over simulated SSH nodes (tests/sshcluster.py): trials run on the nodes, their output
streams home over ZeroMQ, and the study in the lab here sees every result exactly once."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from tests.cli.test_search import study_trials
from tests.running import journal, patas

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.geteuid() != 0, reason="a simulated cluster needs root (users, namespaces, mounts)"),
]

# A program the nodes' plain shell can run: the accuracy peaks at x = 0.3; the loss falls with
# each epoch and is lower for better x, so the pruner has something to compare.
COMMAND = (
    "hostname; for e in 1 2 3; do awk -v x={x} -v e=$e 'BEGIN {print \"epoch\", e, \"loss\", (x-0.3)^2 + 1/e}'; sleep 0.1; done;"
    " awk -v x={x} 'BEGIN {print \"Test accuracy:\", 1 - (x-0.3)^2}'"
)


def test_a_search_runs_its_trials_on_the_nodes_and_counts_each_once(make_sim_cluster, tmp_path):
    cluster = make_sim_cluster(2)
    args = ["--ssh-config", str(cluster.ssh_config_path)]
    for node in cluster.nodes:
        args += ["--node", node.name, "2"]
    run = patas(
        "explore", "--type", "tpe", "--trials", "8", "--seed", "5", "--cmd", COMMAND, "--vu", "x", "0", "1",
        "--objective", "max", "acc", "Test accuracy: (@float@)", "--report", "min", "loss", "epoch (@int@) loss (@float@)",
        "--prune", "median", "--workdir", "~", "--name", "s", "-y", *args, cwd=tmp_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    lab = tmp_path / "pataslab/s"
    trials = study_trials(lab)
    assert len(trials) == 8 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    finished = [r for r in journal(lab) if r["outcome"] in ("done", "pruned")]
    assert Counter(r["task_id"] for r in finished) == {n: 1 for n in range(8)}
    node_names = {node.name for node in cluster.nodes}
    for record in finished:
        output = (lab / str(record["task_id"]) / "stdout").read_text().split("\n")
        assert output[0] in node_names  # printed on a node, arrived here over ZeroMQ
    for trial in trials:
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(1 - (trial.params["x"] - 0.3) ** 2, abs=1e-5)
