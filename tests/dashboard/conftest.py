from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.dashboard.served import SWEEP_TIMEOUT_S, browser_or_skip, wait_until
from tests.running import start_patas


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module's tests (starting one costs seconds)."""
    driver = browser_or_skip()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def sweep(tmp_path: Path):
    """Start one `patas explore` in tmp_path; let it go (file `go`) and wait for it at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = start_patas("explore", *args, "-y", cwd=tmp_path)
        started.append(process)
        wait_until(lambda: (tmp_path / "pataslab/grid").exists() or process.poll() is not None, SWEEP_TIMEOUT_S, "the sweep's lab")
        assert process.poll() is None, process.communicate()
        return process

    yield start
    (tmp_path / "go").touch()
    for process in started:
        try:
            process.communicate(timeout=SWEEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
