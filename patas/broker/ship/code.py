"""The code a run ships: its experiments' snapshots, and where each node holds its copy.

    shipment = plan_shipment(experiments, Path.cwd(), limit_bytes)   # before anything runs
    code, left_out = shipment.deliver(sessions, observer)           # once the nodes are open
    code[experiment_id].workdir_on(placement)                       # a task's folder on its node
    copies = copies_on(code, session)                               # a node joining the run later

Experiments that ship the same paths share one snapshot. A task's workdir is its experiment's
workdir relative to the shipped root, inside the node's copy: the copy is read-only and named by
its digest, so editing the code during a sweep never changes what its tasks run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from patas.broker.launch.session import NodeSession
from patas.broker.local.session import LocalSession
from patas.broker.run.placement import Placement
from patas.broker.ship.snapshot import ShipError, Snapshot, take_snapshot
from patas.broker.ship.transfer import UNREPORTED, LocalTarget, ShipObserver, SSHTarget, Target, Undelivered, deliver, local_cache
from patas.common.config import Experiment
from patas.common.lab import CodeVersion

NodeKey = tuple[int, int]  # (cluster in lab, node in cluster), as placements name a node


@dataclass(frozen=True)
class ShippedCode:
    """One experiment's shipped code, and its copy's folder on every node."""

    snapshot: Snapshot
    workdir: str  # relative to the snapshot's root ("" for the root itself)
    roots: dict[NodeKey, str]

    @property
    def version(self) -> CodeVersion:
        git = self.snapshot.git
        return CodeVersion(self.snapshot.digest, git.commit if git else "", git.dirty if git else False)

    def workdir_on(self, placement: Placement) -> str:
        root = self.roots[(placement.cluster_in_lab, placement.node_in_cluster)]
        return f"{root}/{self.workdir}" if self.workdir else root

    def with_copy(self, node: NodeKey, root: str) -> ShippedCode:
        """The same code, with one more node holding a copy at `root`."""
        return replace(self, roots={**self.roots, node: root})


@dataclass(frozen=True)
class Shipment:
    """The snapshots to ship, by experiment id (experiments that ship nothing are absent)."""

    snapshots: dict[int, Snapshot]
    workdirs: dict[int, str]

    def __bool__(self) -> bool:
        return bool(self.snapshots)

    def deliver(
        self, sessions: dict[NodeKey, NodeSession], observer: ShipObserver
    ) -> tuple[dict[int, ShippedCode], dict[NodeKey, Undelivered]]:
        """Make every snapshot complete on every node: where each copy is, by experiment, and
        the nodes left out, with why (a node that cannot take every snapshot takes none)."""
        local = LocalTarget("this machine", local_cache())
        targets: dict[int, Target] = {}  # by session: a node in two clusters has one session
        unreachable: dict[int, Undelivered] = {}  # by session: no way to ship to it
        for session in sessions.values():
            if id(session) in targets or id(session) in unreachable:
                continue
            try:
                targets[id(session)] = _target(session, local)
            except ShipError as error:
                unreachable[id(session)] = Undelivered(session.node.name, str(error))
                observer.undelivered(unreachable[id(session)])
        unique = list({id(t): t for t in targets.values()}.values())  # local sessions share one
        roots: dict[str, dict[int, str]] = {}  # by snapshot digest, by target
        failed: dict[int, Undelivered] = {}  # by target
        for snapshot in {s.digest: s for s in self.snapshots.values()}.values():
            reachable = [t for t in unique if id(t) not in failed]
            for target, result in zip(reachable, deliver(snapshot, reachable, observer)):
                if isinstance(result, Undelivered):
                    failed[id(target)] = result
                else:
                    roots.setdefault(snapshot.digest, {})[id(target)] = result.root

        def failure(session: NodeSession) -> Undelivered | None:
            return unreachable.get(id(session)) or failed.get(id(targets.get(id(session))))

        left_out = {key: f for key, session in sessions.items() if (f := failure(session)) is not None}
        code = {
            experiment_id: ShippedCode(
                snapshot, self.workdirs[experiment_id],
                {key: roots[snapshot.digest][id(targets[id(s)])] for key, s in sessions.items() if key not in left_out},
            )  # fmt: skip
            for experiment_id, snapshot in self.snapshots.items()
        }
        return code, left_out


def copies_on(code: dict[int, ShippedCode], session: NodeSession) -> dict[int, str]:
    """Ship a run's code to one more node (one that joins the run while it goes on): the root of
    the node's copy, by experiment id. ShipError if it cannot be shipped there. It blocks for as
    long as the transfer takes, so it is called off the run loop's thread."""
    target = _target(session, LocalTarget("this machine", local_cache()))
    roots: dict[str, str] = {}  # by snapshot digest: experiments that ship the same paths share it
    for shipped in code.values():
        if shipped.snapshot.digest not in roots:
            (delivery,) = deliver(shipped.snapshot, [target], UNREPORTED)
            if isinstance(delivery, Undelivered):
                raise ShipError(delivery.error)
            roots[shipped.snapshot.digest] = delivery.root
    return {experiment_id: roots[shipped.snapshot.digest] for experiment_id, shipped in code.items()}


def plan_shipment(experiments: list[Experiment], root: Path, limit_bytes: int) -> Shipment:
    """Snapshot what each experiment ships; ShipError (one line) for what cannot be shipped."""
    snapshots: dict[int, Snapshot] = {}
    workdirs: dict[int, str] = {}
    taken: dict[tuple[str, ...], Snapshot] = {}
    for experiment_id, experiment in enumerate(experiments):
        if not experiment.ship:
            continue
        if experiment.ship not in taken:
            taken[experiment.ship] = take_snapshot(list(experiment.ship), root, limit_bytes, local_cache())
        snapshots[experiment_id] = taken[experiment.ship]
        workdirs[experiment_id] = _relative_workdir(experiment, taken[experiment.ship].root)
    return Shipment(snapshots, workdirs)


def _relative_workdir(experiment: Experiment, root: Path) -> str:
    workdir = Path(os.path.abspath(os.path.expandvars(os.path.expanduser(experiment.workdir)))).resolve()
    try:
        inside = workdir.relative_to(root)
    except ValueError:
        where = experiment.workdir_origin if experiment.workdir_origin != "--workdir" else "--workdir"
        raise ShipError(
            f"{where}: workdir {experiment.workdir} is outside the shipped folder {root}"
            " (tasks run in the node's copy of the current folder: give a workdir inside it)"
        ) from None
    return "" if str(inside) == "." else inside.as_posix()


def _target(session: NodeSession, local: LocalTarget) -> Target:
    if isinstance(session, LocalSession):
        return local
    from patas.broker.slurm.session import SlurmSession

    if isinstance(session, SlurmSession):
        # A Slurm job's nodes run this machine's Python and patas from a filesystem they share
        # with it: they see its cache too, so one copy there serves every node of the job.
        return local
    from patas.broker.ssh.session import SSHSession

    if isinstance(session, SSHSession):
        return SSHTarget(session.node.name, session.client, session.home)
    ship_target = getattr(session, "ship_target", None)  # a pool's agent (patas.broker.pools.pool)
    if ship_target is not None:
        return ship_target()
    raise ShipError(f"{session.node.name}: cannot ship code to this kind of node")

