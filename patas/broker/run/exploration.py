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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from patas.broker.run.control import ControlSettings
from patas.broker.run.coordinator import AgentSource, Coordinator, NoAgentsError, RunObserver, RunResult, RunSettings
from patas.broker.launch.session import NodeFailure, NodeSession, open_sessions
from patas.broker.run.outputs import record_definitions
from patas.broker.run.placement import Placement, place
from patas.broker.run.plan import ExperimentPlan, PlannedTask, check_grid_folder, plan_experiment, save_indexes
from patas.broker.run.scheduler import Counts
from patas.broker.run.source import GridSource, TaskSource
from patas.broker.ssh.options import SSHOptions
from patas.common.config import Cluster, Experiment, Node
from patas.common.errors import ConfigError, did_you_mean
from patas.common.lab import ExperimentLab
from patas.common.lab_lock import LabLock, acquire

if TYPE_CHECKING:  # shipping (--ship), Slurm and task filters are imported where a run uses them
    from patas.broker.run.task_filter import TaskFilter
    from patas.broker.ship.code import Shipment, ShippedCode
    from patas.broker.ship.transfer import ShipObserver, Undelivered
    from patas.broker.slurm.options import SlurmOptions


@dataclass(eq=False)  # one of a kind: compared by identity
class Exploration:
    plans: list[ExperimentPlan]
    placements: list[Placement]
    sessions: dict[str, NodeSession]  # by agent id
    node_failures: list[NodeFailure]
    task_filter: TaskFilter | None
    settings: RunSettings
    locks: list[LabLock]
    control: ControlSettings = ControlSettings()  # how `patas nodes add` reaches new nodes
    joining: AgentSource | None = None  # agents that may join once it runs (a pool's)
    shipment: Shipment | None = None  # what --ship sends (None: nothing)
    code: dict[int, ShippedCode] | None = None  # by experiment id, once shipped

    def __enter__(self) -> "Exploration":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections to the nodes and let the experiment folders go."""
        try:
            for session in self.sessions.values():
                session.close()
            if self.joining is not None:
                self.joining.close()
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
        for plan in self.plans:
            if plan.experiment.search is not None:
                from patas.broker.run.study import settle

                settle(plan)  # type: ignore[arg-type]
        save_indexes(self.plans)

    def ship(self, observer: ShipObserver) -> None:
        """Send the shipped code (--ship) to every node that lacks it; once per exploration. A
        node the code cannot reach is left out of the run (`node_failures`); ShipError if none
        is left."""
        if self.code is not None:
            return
        if self.shipment is None:
            self.code = {}
            return
        nodes = {(p.cluster_in_lab, p.node_in_cluster): self.sessions[p.agent_id] for p in self.placements}
        self.code, left_out = self.shipment.deliver(nodes, observer)
        if left_out:
            self._leave_out(left_out)

    def _leave_out(self, left_out: dict[tuple[int, int], Undelivered]) -> None:
        from patas.broker.ship.snapshot import ShipError

        kept = [p for p in self.placements if (p.cluster_in_lab, p.node_in_cluster) not in left_out]
        if not kept:
            failures = list({f.node_name: f for f in left_out.values()}.values())
            if len(failures) == 1:
                raise ShipError(failures[0].error)
            raise ShipError("--ship: no node could take the code: " + "; ".join(f"{f.node_name}: {f.reason}" for f in failures))
        for placement in self.placements:
            failure = left_out.get((placement.cluster_in_lab, placement.node_in_cluster))
            if failure is not None:
                self.sessions.pop(placement.agent_id).close()
                self.node_failures.append(NodeFailure(placement.node, f"cannot take the code: {failure.reason}"))
        self.placements = kept

    def run(self, observer: RunObserver) -> RunResult:
        """Run every pending task (in the shipped code, sent first if not yet); the definitions
        are recorded once the run has started."""
        if self.code is None and self.shipment is not None:  # not shipped first to show progress
            from patas.broker.ship.transfer import UNREPORTED

            self.ship(UNREPORTED)
        to_run = tuple(
            plan.to_run if self.task_filter is None else plan.selection(self.task_filter).to_run(plan.redo) for plan in self.plans
        )
        control = replace(self.control, to_run=to_run)
        counts = self.counts()
        coordinator = Coordinator(
            self.plans, self._source(counts), counts, self.placements, self.sessions, observer, self.settings, control,
            self.joining, self.code,
        )
        result = coordinator.run()
        save_indexes(self.plans)  # still holding the locks: the journal is the run's to summarise
        return result

    def _source(self, counts: Counts) -> TaskSource:
        """A search's study makes its tasks as slots free up; grids' tasks are walked in order."""
        searches = [plan for plan in self.plans if plan.experiment.search is not None]
        if searches:
            from patas.broker.run.study import SearchPlan, StudySource

            assert isinstance(searches[0], SearchPlan)
            return StudySource(searches[0], counts)
        return GridSource(self._pending())


def prepare(
    experiments: list[Experiment],
    clusters: list[Cluster],
    lab_root: Path,
    redo: bool = False,
    task_filter: TaskFilter | None = None,
    settings: RunSettings = RunSettings(),
    ssh: SSHOptions = SSHOptions(),
    pool: str | None = None,
    slurm: SlurmOptions | None = None,
    ship_limit_bytes: int | None = None,  # None: patas.broker.ship.snapshot.DEFAULT_SHIP_LIMIT_BYTES
    new_study: bool = False,
) -> Exploration:
    """Plan a run and connect to its nodes: what is done, what is left, where it will run.

    Starts no agent. A node that cannot be used is reported in `node_failures`; the run goes on
    without it, unless no node at all can be used."""
    check_run(experiments, clusters, task_filter)
    shipment = _plan_shipment(experiments, ship_limit_bytes)  # before the lab is touched
    locks: list[LabLock] = []
    try:
        # Locked before the journal is read: a second run is refused before it plans anything.
        for experiment in experiments:
            locks.append(acquire(ExperimentLab(lab_root, experiment.name).path))
        plans = plan_run(experiments, lab_root, redo, task_filter, new_study)
        placements, sessions, failures, joining = _connect(clusters, ssh, pool, slurm, settings.bind_host)
    except BaseException:
        _release(locks)
        raise
    control = ControlSettings(open_remote=lambda node: _ssh_session(node, ssh), pool=pool)
    return Exploration(plans, placements, sessions, failures, task_filter, settings, locks, control, joining, shipment)


def _plan_shipment(experiments: list[Experiment], limit_bytes: int | None) -> Shipment | None:
    """What --ship sends, snapshotted now; None when no experiment ships."""
    if not any(experiment.ship for experiment in experiments):
        return None
    from patas.broker.ship.code import plan_shipment
    from patas.broker.ship.snapshot import DEFAULT_SHIP_LIMIT_BYTES

    shipment = plan_shipment(experiments, Path.cwd(), DEFAULT_SHIP_LIMIT_BYTES if limit_bytes is None else limit_bytes)
    return shipment if shipment else None


def _connect(
    clusters: list[Cluster], ssh: SSHOptions, pool: str | None, slurm: SlurmOptions | None, bind_host: str | None
) -> tuple[list[Placement], dict[str, NodeSession], list[NodeFailure], AgentSource | None]:
    """The placements of the run's agents, the sessions to start them through, and where more
    agents may come from once the run goes on (a pool's newcomers)."""
    opened: list[NodeSession | None]
    joining: AgentSource | None = None
    if slurm is not None:
        from patas.broker.slurm.session import slurm_sessions

        slurm_cluster, submitted = slurm_sessions(slurm, bind_host)
        clusters = [slurm_cluster]
        opened, failures = list(submitted), []
    elif pool is not None:
        from patas.broker.pools.pool import PoolBorrowing

        borrowing = PoolBorrowing(pool, ssh)
        clusters = [borrowing.cluster]
        opened, failures, joining = list(borrowing.sessions), [], borrowing
    else:
        nodes = [node for cluster in clusters for node in cluster.nodes]
        opened, failures = open_sessions(nodes, lambda node: _ssh_session(node, ssh))
    indexed = [((ci, ni), node) for ci, cluster in enumerate(clusters) for ni, node in enumerate(cluster.nodes)]
    live = {index: session for (index, _), session in zip(indexed, opened) if session is not None}
    if not live:
        if joining is not None:
            joining.close()
        raise NoAgentsError("no node can be used: " + "; ".join(str(f) for f in failures))
    placements = place(clusters, {index: session.slots for index, session in live.items()})
    sessions = {p.agent_id: live[(p.cluster_in_lab, p.node_in_cluster)] for p in placements}
    return placements, sessions, failures, joining


def _release(locks: list[LabLock]) -> None:
    for lock in reversed(locks):
        lock.release()


def check_run(experiments: list[Experiment], clusters: list[Cluster], task_filter: TaskFilter | None) -> None:
    """Refuse a run whose experiments cannot work together or here; reads nothing of the lab."""
    _check_unique([e.name for e in experiments], "experiment", "--name or 'name:'")
    _check_searches(experiments, task_filter)
    if task_filter is not None and task_filter.experiment is not None:
        names = [e.name for e in experiments]
        if task_filter.experiment not in names:
            raise ConfigError(
                f"--filter-tasks: no experiment named '{task_filter.experiment}'{did_you_mean(task_filter.experiment, names)}"
                f" (this run's: {', '.join(names)})"
            )
    if any(node.is_local for cluster in clusters for node in cluster.nodes):
        for experiment in experiments:
            _check_local_workdir(experiment)


def plan_run(
    experiments: list[Experiment], lab_root: Path, redo: bool, task_filter: TaskFilter | None, new_study: bool = False
) -> list[ExperimentPlan]:
    """Read what the pataslab holds of each experiment; touches no node, writes nothing."""
    # Optuna and the pattern parser are imported for a search only: a grid's start-up is spared them.
    if any(experiment.search is not None for experiment in experiments):
        from patas.broker.run.study import plan_search
    # A grid is planned through its plan index, unless tasks are selected by id (which reads the
    # whole journal).
    plans = [
        plan_search(i, experiment, ExperimentLab(lab_root, experiment.name), redo, new_study)
        if experiment.search is not None
        else _plan_grid(i, experiment, ExperimentLab(lab_root, experiment.name), redo, use_index=task_filter is None)
        for i, experiment in enumerate(experiments)
    ]
    if task_filter is not None:
        _check_selects_a_task(plans, task_filter)
    return plans


def _plan_grid(experiment_id: int, experiment: Experiment, lab: ExperimentLab, redo: bool, use_index: bool) -> ExperimentPlan:
    check_grid_folder(lab)
    return plan_experiment(experiment_id, experiment, lab, redo, use_index=use_index)


def _check_searches(experiments: list[Experiment], task_filter: TaskFilter | None) -> None:
    searches = [e for e in experiments if e.search is not None]
    if not searches:
        return
    if len(experiments) > 1:
        raise ConfigError(f"experiment '{searches[0].name}' is a search: run it on its own, not with other experiments")
    if task_filter is not None:
        raise ConfigError("--filter-tasks picks tasks of a grid; a search makes its tasks as it goes (leave it out)")
    from patas.broker.run.study import check_search

    check_search(searches[0])


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
