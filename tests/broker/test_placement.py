"""Numbering the agents that join a running run (a pool's newcomers, or its agents back)."""

from __future__ import annotations

from patas.broker.run.placement import place, place_joining
from patas.common.config import Cluster, Node

POOL = Cluster("lab", (Node("node0", "h0", workers=2), Node("node1", "h1", workers=3)))


def test_an_agent_back_on_a_node_keeps_its_numbers():
    placements = place([POOL], {(0, 0): 2, (0, 1): 3})
    back = place_joining(placements, Node("node1", "h1", workers=3), 3, "lab", "node1~joined1")
    assert (back.node_in_lab, back.node_in_cluster, back.first_worker_in_lab, back.first_worker_in_cluster) == (1, 1, 2, 2)
    assert back.agent_id == "node1~joined1" and back.cluster_name == "lab"


def test_a_new_node_is_numbered_after_every_node_and_worker_so_far():
    placements = place([POOL], {(0, 0): 2, (0, 1): 3})
    new = place_joining(placements, Node("node2", "h2", workers=4), 4, "lab", "node2~joined1")
    assert (new.cluster_in_lab, new.node_in_lab, new.node_in_cluster) == (0, 2, 2)
    assert (new.first_worker_in_lab, new.first_worker_in_cluster) == (5, 5)
    after = place_joining([*placements, new], Node("node3", "h3", workers=1), 1, "lab", "node3~joined2")
    assert (after.node_in_lab, after.first_worker_in_lab) == (3, 9)
