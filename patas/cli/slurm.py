"""The options of `--slurm` (explore and pool up) and `--gpus-per-task`."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import click

from patas.common.config import Cluster, check_gpus_suffice
from patas.common.errors import ConfigError, UsageError

# The options that only mean something with --slurm, as the user types them.
_SLURM_ONLY = {
    "partition": "--partition", "slurm_nodes": "--slurm-nodes", "slurm_jobs": "--slurm-jobs", "time": "--time",
    "cpus_per_node": "--cpus-per-node", "gpus_per_node": "--gpus-per-node", "sbatch_args": "--sbatch-arg",
}  # fmt: skip


def slurm_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--slurm and what shapes its jobs."""
    decorators = [
        click.option("--slurm", is_flag=True, help="Run the agents as Slurm jobs (sbatch), one per allocated node."),
        click.option("--partition", default=None, metavar="P", help="Slurm partition of the jobs."),
        click.option("--slurm-nodes", type=int, default=None, metavar="N",
                     help="One Slurm job of N nodes, an agent on each.  [default: 1]"),
        click.option("--slurm-jobs", type=int, default=None, metavar="N", help="N one-node Slurm jobs instead."),
        click.option("--time", default=None, metavar="T", help="Time limit of each Slurm job (sbatch --time)."),
        click.option("--cpus-per-node", type=int, default=None, metavar="C",
                     help="CPUs to ask for on each node (a task per CPU).  [default: whole nodes]"),
        click.option("--gpus-per-node", type=int, default=None, metavar="G", help="GPUs to ask for on each node."),
        click.option("--sbatch-arg", "sbatch_args", multiple=True, metavar="ARG",
                     help="Pass ARG to sbatch as is (repeatable), e.g. --sbatch-arg=--account=lab."),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def slurm_options_from(options: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The SlurmOptions of --slurm, or None; Slurm-only options without --slurm are an error."""
    if not options["slurm"]:
        given = [flag for key, flag in _SLURM_ONLY.items() if options[key]]
        if given:
            raise UsageError(f"{given[0]} shapes the Slurm jobs of --slurm; add --slurm (or leave it out)")
        return None
    from patas.broker.slurm.options import SlurmOptions  # with --slurm only

    for other, flag in (("pool", "--pool"), ("cluster_files", "--cluster"), ("node_specs", "--node"), ("jobs", "-j")):
        if options.get(other):
            raise UsageError(f"--slurm runs on nodes Slurm allocates; leave out {flag}")
    return SlurmOptions(
        partition=options["partition"],
        nodes=options["slurm_nodes"],
        jobs=options["slurm_jobs"],
        time=options["time"],
        cpus_per_node=options["cpus_per_node"],
        gpus_per_node=options["gpus_per_node"],
        gpus_per_task=options["gpus_per_task"] or 1,
        sbatch_args=tuple(options["sbatch_args"]),
    )


def with_gpus_per_task(clusters: list[Cluster], per_task: int | None) -> list[Cluster]:
    """`--gpus-per-task K` on every node: of its `gpus:` list, or GPUs 0.. of its WORKERS x K."""
    if per_task is None:
        return clusters
    if per_task < 1:
        raise ConfigError(f"--gpus-per-task {per_task}: must be at least 1")
    result = []
    for cluster in clusters:
        nodes = []
        for node in cluster.nodes:
            gpus = node.gpus
            if gpus is None:
                if node.workers is None:
                    raise ConfigError(
                        f"--gpus-per-task {per_task}: node {node.name} ({node.address}) lists no gpus: and no WORKERS"
                        " to count them from (give --node HOST WORKERS, or gpus: [0, 1, ...] in its cluster file)"
                    )
                gpus = tuple(str(i) for i in range(node.workers * per_task))
            nodes.append(dataclasses.replace(node, gpus=gpus, gpus_per_task=per_task))
            check_gpus_suffice(nodes[-1], f"--gpus-per-task {per_task}: node {node.name}")
        result.append(Cluster(cluster.name, tuple(nodes)))
    return result
