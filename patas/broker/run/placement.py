"""Where each agent sits in the lab: its cluster, its node, the global numbering of its workers.

These numbers become the tasks' PATAS_*_IN_* environment variables and the journal's columns, as
in the original patas: workers are numbered across the lab and within each cluster and node.
"""

from __future__ import annotations

from dataclasses import dataclass

from patas.common.config import Cluster, Node


@dataclass(frozen=True)
class Placement:
    agent_id: str
    node: Node
    slots: int
    cluster_name: str
    cluster_in_lab: int
    node_in_lab: int
    node_in_cluster: int
    first_worker_in_lab: int
    first_worker_in_cluster: int


def place(clusters: list[Cluster], slots: dict[tuple[int, int], int]) -> list[Placement]:
    """Number every node and worker; `slots[(cluster index, node index)]` is the size of each node
    that is up. Nodes keep their numbers whether or not the others are up; workers are numbered
    over the nodes that are up."""
    placements = []
    node_in_lab = worker_in_lab = 0
    for cluster_in_lab, cluster in enumerate(clusters):
        worker_in_cluster = 0
        for node_in_cluster, node in enumerate(cluster.nodes):
            size = slots.get((cluster_in_lab, node_in_cluster))
            if size is None:
                node_in_lab += 1
                continue
            agent_id = f"{node_in_lab}-{node.name}"  # unique even when clusters reuse node names
            placements.append(
                Placement(agent_id, node, size, cluster.name, cluster_in_lab, node_in_lab, node_in_cluster, worker_in_lab, worker_in_cluster)
            )
            node_in_lab += 1
            worker_in_lab += size
            worker_in_cluster += size
    return placements


def place_joining(placements: list[Placement], node: Node, slots: int, cluster_name: str, agent_id: str) -> Placement:
    """A place for an agent that joins a running run: a node seen before keeps its numbers (a
    pool agent that rejoins); a new one is numbered after every node and worker placed so far."""
    earlier = next((p for p in reversed(placements) if p.node.name == node.name and p.cluster_name == cluster_name), None)
    if earlier is not None:
        return Placement(
            agent_id, node, slots, cluster_name, earlier.cluster_in_lab, earlier.node_in_lab, earlier.node_in_cluster,
            earlier.first_worker_in_lab, earlier.first_worker_in_cluster,
        )  # fmt: skip
    cluster = [p for p in placements if p.cluster_name == cluster_name]
    return Placement(
        agent_id, node, slots, cluster_name,
        cluster[0].cluster_in_lab if cluster else max((p.cluster_in_lab for p in placements), default=-1) + 1,
        max((p.node_in_lab for p in placements), default=-1) + 1,
        max((p.node_in_cluster for p in cluster), default=-1) + 1,
        max((p.first_worker_in_lab + p.slots for p in placements), default=0),
        max((p.first_worker_in_cluster + p.slots for p in cluster), default=0),
    )  # fmt: skip
