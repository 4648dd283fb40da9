"""The real Slurm of tests/slurmcluster.py, started once per test session for the tests here."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.slurmcluster import SlurmCluster, SlurmUnavailable, start_slurm


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    try:
        cluster = start_slurm()
    except SlurmUnavailable as error:
        pytest.skip(f"no real Slurm here: {error.reason}")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def quiet_slurm(slurm: SlurmCluster) -> Iterator[SlurmCluster]:
    """The cluster with no job of an earlier test still queued or running."""
    slurm.wait_for(lambda: not slurm.jobs(), what="an empty queue")
    yield slurm
