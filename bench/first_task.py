"""The time from launching a sweep to its first committed task, shared by the benchmarks."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

POLL_S = 0.005


def seconds_to_first_task(argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> float:
    """Seconds from starting `argv` (a `patas explore` of the experiment `grid`) to its first
    journal line; the sweep then runs to its end."""
    journal = cwd / "pataslab" / "grid" / "journal.jsonl"
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not (journal.exists() and journal.stat().st_size > 0):
            if process.poll() is not None:
                raise RuntimeError(f"patas exited early: {process.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
            if time.monotonic() - started > timeout_s:
                raise RuntimeError("no task within the timeout")
            time.sleep(POLL_S)
        return time.monotonic() - started
    finally:
        process.wait(timeout_s)
