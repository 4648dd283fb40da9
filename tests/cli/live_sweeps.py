"""Sweeps left running while a test looks at them: `patas status`, `patas nodes`."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest

from patas.analysis.status import ExperimentStatus, lab_status
from tests.running import start_patas

T = TypeVar("T")
START_TIMEOUT_S = 60.0


def wait_for(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Look at `probe` until it gives something (not None or False); that thing."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.05)


def gate(folder: Path, name: str = "go") -> str:
    """A shell loop that waits until the test creates `folder/name`."""
    return f"while [ ! -e {folder / name} ]; do sleep 0.02; done"


def live(lab: Path, experiment: str = "grid") -> ExperimentStatus | None:
    """The experiment's status, if a run answers for it (None before it listens)."""
    try:
        status = lab_status(lab, experiment).experiments[0]
    except Exception:  # the lab may not exist yet: the run is starting
        return None
    return status if status.live and status.nodes else None


def running_on(lab: Path, node: str, count: int = 1) -> ExperimentStatus | None:
    """The status once `count` tasks run on `node`."""
    status = live(lab)
    if status is None or sum(1 for t in status.running_tasks if t.node == node) < count:
        return None
    return status


@pytest.fixture
def sweeps(tmp_path: Path):
    """Start `patas explore` in tmp_path; every sweep is let go (tmp_path/go) and waited for at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, cwd: Path = tmp_path) -> subprocess.Popen[str]:
        process = start_patas("explore", *args, "-y", cwd=cwd)
        started.append(process)
        return process

    yield start
    (tmp_path / "go").touch()
    for process in started:
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
