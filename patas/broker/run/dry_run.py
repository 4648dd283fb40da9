"""`explore --dry-run`: what a run would do, without doing any of it.

The plan (tasks done, to run, what changed) and the rendered commands of the first tasks. No node
is contacted (SSH or pool), no agent started, and the pataslab is only read: not a file or folder
is created, so a dry run before the first run leaves no `pataslab/` behind.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from patas.broker.run.exploration import check_run, plan_run
from patas.broker.run.plan import ExperimentPlan, PlannedTask
from patas.broker.run.task_filter import TaskFilter
from patas.common.config import Cluster, Experiment, Node

# Tasks whose commands a dry run shows.
DRY_RUN_TASKS_SHOWN = 10


@dataclass(frozen=True)
class DryRun:
    plans: list[ExperimentPlan]
    nodes: list[tuple[str, Node]]  # (cluster name, node), as configured: none was contacted
    pool: str | None
    first_tasks: list[PlannedTask]  # the first DRY_RUN_TASKS_SHOWN tasks a run would start
    to_run: int


def dry_run(
    experiments: list[Experiment],
    clusters: list[Cluster],
    lab_root: Path,
    redo: bool = False,
    task_filter: TaskFilter | None = None,
    pool: str | None = None,
) -> DryRun:
    """What a run of these experiments would do; raises what the run would raise on bad input."""
    check_run(experiments, clusters, task_filter)
    plans = plan_run(experiments, lab_root, redo, task_filter)
    pending = itertools.chain.from_iterable(plan.pending(task_filter) for plan in plans)
    first = list(itertools.islice(pending, DRY_RUN_TASKS_SHOWN))
    if task_filter is None:
        to_run = sum(plan.to_run for plan in plans)
    else:
        to_run = sum(plan.selection(task_filter).to_run(plan.redo) for plan in plans)
    nodes = [] if pool is not None else [(cluster.name, node) for cluster in clusters for node in cluster.nodes]
    return DryRun(plans, nodes, pool, first, to_run)
