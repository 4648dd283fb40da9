"""pytest fixtures for simulated clusters (tests/sshcluster.py), registered for every test module
by tests/conftest.py:

- `sim_cluster` (session): SIM_CLUSTER_NODES nodes, built once per test session and torn
  down when the session ends. Skips, with the reason, where the machine
  cannot host a cluster (not root, no sshd, no namespaces).
- `clean_sim_cluster` (function): the same cluster, reset before
  and after the test: links up, no process of any node user left, homes and /tmp empty.
- `make_sim_cluster` (function): `make_sim_cluster(n, **build_cluster_options)` builds a cluster
  for one test (another size, `with_python=False`, `node_options=...`); closed after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sshcluster import ClusterUnavailable, SimulatedCluster, build_cluster

SIM_CLUSTER_NODES = 4


class _SessionCluster:
    """The session's cluster, built on first use and closed when its last user is done."""

    cluster: SimulatedCluster | None = None
    unavailable: str | None = None
    holders = 0


def _build(n: int, workdir: Path, **options: Any) -> SimulatedCluster:
    try:
        return build_cluster(n, workdir=workdir, **options)
    except ClusterUnavailable as error:
        pytest.skip(f"no simulated cluster: {error.reason}")


@pytest.fixture(scope="session")
def sim_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedCluster]:
    shared = _SessionCluster
    if shared.unavailable:
        pytest.skip(shared.unavailable)
    if shared.cluster is None:
        try:
            shared.cluster = build_cluster(SIM_CLUSTER_NODES, workdir=tmp_path_factory.mktemp("sim-cluster"))
        except ClusterUnavailable as error:
            shared.unavailable = f"no simulated cluster: {error.reason}"
            pytest.skip(shared.unavailable)
    shared.holders += 1
    try:
        yield shared.cluster
    finally:
        shared.holders -= 1
        if shared.holders == 0:
            shared.cluster.close()
            shared.cluster = None


@pytest.fixture
def clean_sim_cluster(sim_cluster: SimulatedCluster) -> Iterator[SimulatedCluster]:
    sim_cluster.reset()
    yield sim_cluster
    sim_cluster.reset()


@pytest.fixture
def make_sim_cluster(tmp_path: Path) -> Iterator[Callable[..., SimulatedCluster]]:
    clusters: list[SimulatedCluster] = []

    def make(n: int, **options: Any) -> SimulatedCluster:
        workdir = tmp_path / f"sim-cluster{len(clusters)}"
        workdir.mkdir(mode=0o700)
        clusters.append(_build(n, workdir, **options))
        return clusters[-1]

    yield make
    for cluster in reversed(clusters):
        cluster.close()
