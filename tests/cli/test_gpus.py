"""GPUs on any node: each worker slot gets GPUs of its own, seen by its tasks."""

from __future__ import annotations

from pathlib import Path

from tests.running import journal, patas

PRINT = "sleep 0.2; echo $PATAS_WORKER_IN_NODE $CUDA_VISIBLE_DEVICES $PATAS_GPUS"


def _seen(experiment: Path) -> dict[str, set[str]]:
    """Worker → the GPU lists its tasks saw (both variables must agree)."""
    seen: dict[str, set[str]] = {}
    for record in journal(experiment):
        worker, cuda, patas_gpus = (experiment / str(record["task_id"]) / "stdout").read_text().split()
        assert cuda == patas_gpus
        seen.setdefault(worker, set()).add(cuda)
    return seen


def test_four_workers_on_a_four_gpu_node_never_share_one(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text("nodes:\n  - {hostname: localhost, gpus: [0, 1, 2, 3]}\n")
    done = patas("explore", "-y", "--cluster", "cluster.yaml", "--cmd", PRINT, "--va", "x", "0", "16", "1", cwd=tmp_path)
    assert done.code == 0, done.stderr
    seen = _seen(tmp_path / "pataslab" / "grid")
    assert seen == {str(w): {str(w)} for w in range(4)}


def test_gpus_per_task_gives_each_worker_its_own_pair(tmp_path: Path) -> None:
    done = patas("explore", "-y", "--node", "localhost", "2", "--gpus-per-task", "2", "--cmd", PRINT,
                 "--va", "x", "0", "8", "1", cwd=tmp_path)  # fmt: skip
    assert done.code == 0, done.stderr
    assert _seen(tmp_path / "pataslab" / "grid") == {"0": {"0,1"}, "1": {"2,3"}}
