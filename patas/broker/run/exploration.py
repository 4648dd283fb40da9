"""`explore` as a library call: plan the experiments, then run them on the given nodes.

    with prepare(experiments, clusters, Path("pataslab")) as exploration:
        result = exploration.run(observer)

`prepare` locks each experiment's folder (one run per folder), reads the pataslab and says what
will happen (tasks done, to run, what changed) without starting anything, so the CLI can show it
and ask for confirmation. Nothing in the lab changes until the run starts (`run`) or finds
nothing to run (`record_definitions`); closing the exploration releases the locks.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from patas.broker.run.coordinator import Coordinator, NoAgentsError, RunObserver, RunResult, RunSettings
from patas.broker.launch.session import NodeFailure, NodeSession, open_sessions
from patas.broker.run.outputs import record_definitions
from patas.broker.run.placement import Placement, place
from patas.broker.run.plan import ExperimentPlan, PlannedTask, TaskFilter, plan_experiment, save_indexes
from patas.broker.run.scheduler import Counts
from patas.broker.ssh.options import SSHOptions
from patas.common.config import Cluster, Experiment, Node
from patas.common.errors import ConfigError
from patas.common.lab import ExperimentLab
from patas.common.lab_lock import LabLock, acquire


@dataclass
class Exploration:
    plans: list[ExperimentPlan]
    placements: list[Placement]
    sessions: dict[str, NodeSession]  # by agent id
    node_failures: list[NodeFailure]
    task_filter: TaskFilter | None
    settings: RunSettings
    locks: list[LabLock]

    def __enter__(self) -> "Exploration":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections to the nodes and let the experiment folders go."""
        try:
            for session in self.sessions.values():
                session.close()
        finally:
            _release(self.locks)

    @property
    def workers(self) -> int:
        return sum(p.slots for p in self.placements)

    def counts(self) -> Counts:
        """Fresh counts for a run of this plan (the run updates the object it is given)."""
        if self.task_filter is None:
            to_run = sum(plan.to_run for plan in self.plans)
            skipped = sum(0 if plan.redo else plan.done for plan in self.plans)
            return Counts(total=to_run + skipped, skipped=skipped)
        return Counts(total=sum(plan.selection(self.task_filter).to_run(plan.redo) for plan in self.plans))

    def _pending(self) -> Iterator[PlannedTask]:
        return itertools.chain.from_iterable(plan.pending(self.task_filter) for plan in self.plans)

    def record_definitions(self) -> None:
        """Accept a run that has nothing to do: the lab records what was asked for."""
        record_definitions([plan.lab for plan in self.plans], [plan.experiment.to_record() for plan in self.plans])
        save_indexes(self.plans)

    def run(self, observer: RunObserver) -> RunResult:
        """Run every pending task; the definitions are recorded once the run has started."""
        coordinator = Coordinator(
            self.plans, self._pending(), self.counts(), self.placements, self.sessions, observer, self.settings
        )
        result = coordinator.run()
        save_indexes(self.plans)  # still holding the locks: the journal is the run's to summarise
        return result


def prepare(
    experiments: list[Experiment],
    clusters: list[Cluster],
    lab_root: Path,
    redo: bool = False,
    task_filter: TaskFilter | None = None,
    settings: RunSettings = RunSettings(),
    ssh: SSHOptions = SSHOptions(),
    pool: str | None = None,
) -> Exploration:
    """Plan a run and connect to its nodes: what is done, what is left, where it will run.

    Starts no agent. A node that cannot be used is reported in `node_failures`; the run goes on
    without it, unless no node at all can be used."""
    check_run(experiments, clusters, task_filter)
    locks: list[LabLock] = []
    try:
        # Locked before the journal is read: a second run is refused before it plans anything.
        for experiment in experiments:
            locks.append(acquire(ExperimentLab(lab_root, experiment.name).path))
        plans = plan_run(experiments, lab_root, redo, task_filter)
        placements, sessions, failures = _connect(clusters, ssh, pool)
    except BaseException:
        _release(locks)
        raise
    return Exploration(plans, placements, sessions, failures, task_filter, settings, locks)


def _connect(
    clusters: list[Cluster], ssh: SSHOptions, pool: str | None
) -> tuple[list[Placement], dict[str, NodeSession], list[NodeFailure]]:
    """The placements of the run's agents and the sessions to start them through."""
    if pool is not None:
        from patas.broker.pools.pool import pool_sessions

        pool_cluster, borrowed = pool_sessions(pool)
        clusters = [pool_cluster]
        opened, failures = list(borrowed), []
    else:
        nodes = [node for cluster in clusters for node in cluster.nodes]
        opened, failures = open_sessions(nodes, lambda node: _ssh_session(node, ssh))
    indexed = [((ci, ni), node) for ci, cluster in enumerate(clusters) for ni, node in enumerate(cluster.nodes)]
    live = {index: session for (index, _), session in zip(indexed, opened) if session is not None}
    if not live:
        raise NoAgentsError("no node can be used: " + "; ".join(str(f) for f in failures))
    placements = place(clusters, {index: session.slots for index, session in live.items()})
    sessions = {p.agent_id: live[(p.cluster_in_lab, p.node_in_cluster)] for p in placements}
    return placements, sessions, failures


def _release(locks: list[LabLock]) -> None:
    for lock in reversed(locks):
        lock.release()


def check_run(experiments: list[Experiment], clusters: list[Cluster], task_filter: TaskFilter | None) -> None:
    """Refuse a run whose experiments cannot work together or here; reads nothing of the lab."""
    _check_unique([e.name for e in experiments], "experiment", "--name or 'name:'")
    if task_filter is not None and task_filter.experiment is not None:
        if task_filter.experiment not in [e.name for e in experiments]:
            raise ConfigError(f"--filter-tasks: no experiment named '{task_filter.experiment}'")
    if any(node.is_local for cluster in clusters for node in cluster.nodes):
        for experiment in experiments:
            _check_local_workdir(experiment)


def plan_run(experiments: list[Experiment], lab_root: Path, redo: bool, task_filter: TaskFilter | None) -> list[ExperimentPlan]:
    """Read what the pataslab holds of each experiment; touches no node, writes nothing."""
    # Through the plan index, unless tasks are selected by id (which reads the whole journal).
    plans = [
        plan_experiment(i, experiment, ExperimentLab(lab_root, experiment.name), redo, use_index=task_filter is None)
        for i, experiment in enumerate(experiments)
    ]
    if task_filter is not None:
        _check_selects_a_task(plans, task_filter)
    return plans


def _ssh_session(node: Node, ssh: SSHOptions) -> NodeSession:
    # Imported here: paramiko and its cryptography cost ~20 MB and 0.4 s, needless for local runs.
    from patas.broker.ssh.session import SSHSession

    return SSHSession(node, ssh)


def _check_local_workdir(experiment: Experiment) -> None:
    path = os.path.expandvars(os.path.expanduser(experiment.workdir))
    if not os.path.isdir(path):
        if experiment.workdir_origin != "--workdir":  # set by a YAML file
            raise ConfigError(f"{experiment.workdir_origin}: workdir {experiment.workdir} does not exist (fix 'workdir:')")
        raise ConfigError(f"experiment '{experiment.name}': workdir {experiment.workdir} does not exist (fix --workdir)")


def _check_selects_a_task(plans: list[ExperimentPlan], task_filter: TaskFilter) -> None:
    filtered = [plan for plan in plans if task_filter.ids_for(plan.experiment.name) is not None]
    if all(plan.selection(task_filter).selected == 0 for plan in filtered):
        ranges = "; ".join(f"{plan.experiment.name} has task ids 0 to {plan.last_task_id}" for plan in filtered)
        raise ConfigError(f"--filter-tasks {task_filter} selects no task ({ranges})")


def _check_unique(names: list[str], what: str, fix: str) -> None:
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"two {what}s are named '{name}' (give each its own with {fix})")
