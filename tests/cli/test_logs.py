"""Watching tasks as they run: output on the coordinator's disk as it is printed, `patas logs`."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.running import patas, start_patas

DEADLINE_S = 2.0  # how soon a printed line must show


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll `condition` until it holds; how long that took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"{what}: not within {timeout_s} s"
        time.sleep(0.02)
    return time.monotonic() - started


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def gate(folder: Path, name: str) -> str:
    """A shell loop that waits until the test creates `folder/name`."""
    return f"while [ ! -e {folder / name} ]; do sleep 0.02; done"


@pytest.fixture
def sweeps(tmp_path: Path):
    """Start `patas explore` in tmp_path; every sweep started is let go and waited for at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = start_patas("explore", *args, "-y", cwd=tmp_path)
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


def test_a_line_printed_by_a_running_task_is_in_its_attempt_file_within_two_seconds(tmp_path, sweeps):
    sweep = sweeps("--cmd", f"echo 'epoch 1'; {gate(tmp_path, 'go')}")
    folder = tmp_path / "pataslab/grid/0"
    wait_for(lambda: folder.exists() or sweep.poll() is not None, 30, "the task to start")  # made as it is sent
    assert sweep.poll() is None, sweep.communicate()
    wait_for(lambda: read(folder / "attempt-1.stdout") == b"epoch 1\n", DEADLINE_S, "the line on disk")
    assert sweep.poll() is None  # the task still runs: it was not the end of the attempt that wrote it
    (tmp_path / "go").touch()
    assert sweep.wait(60) == 0
    assert (tmp_path / "pataslab/grid/0/stdout").read_bytes() == b"epoch 1\n"
