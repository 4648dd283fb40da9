"""Running `patas` as a user does: a real process, real files, real exit codes."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
# `#!/usr/bin/env python3` scripts (the example) should find this interpreter directly, not a
# slow version-manager shim, so that tests spend their time in patas.
ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO),
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    "COLUMNS": "200",
}


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def patas(*args: str, cwd: Path, timeout: float = 120, stdin: str = "") -> Run:
    """Run `python -m patas ARGS` in `cwd` to completion."""
    done = subprocess.run(
        [sys.executable, "-m", "patas", *args], cwd=cwd, env=ENV, input=stdin, capture_output=True, text=True, timeout=timeout
    )
    return Run(done.returncode, done.stdout, done.stderr)


def start_patas(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start `python -m patas ARGS` in `cwd` and return at once."""
    return subprocess.Popen(
        [sys.executable, "-m", "patas", *args], cwd=cwd, env=ENV, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def journal(experiment_dir: Path) -> list[dict]:
    path = experiment_dir / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def done_ids(experiment_dir: Path) -> list[int]:
    return sorted(r["task_id"] for r in journal(experiment_dir) if r["outcome"] == "done")


def processes_with(marker: str, cwd: Path | None = None) -> list[int]:
    """PIDs of live (not zombie) processes whose command line contains `marker` (and, given
    `cwd`, that run in that folder: other work on the machine may run patas too)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if marker in cmdline and state != "Z" and (cwd is None or _cwd(entry) == cwd):
            found.append(int(entry.name))
    return found


def _cwd(process: Path) -> Path | None:
    try:
        return Path(os.readlink(process / "cwd"))
    except OSError:
        return None


@contextlib.contextmanager
def adopting_orphans() -> Iterator[Callable[[], list[int]]]:
    """Within the block this process is a child subreaper (Linux): the orphaned descendants of
    what it starts re-parent to it rather than to init. Yields a function listing the children
    it has now that it did not have before (alive or not reaped). Those are reaped at the end."""
    libc = ctypes.CDLL(None, use_errno=True)
    before = set(_own_children())
    assert libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, os.strerror(ctypes.get_errno())
    adopted = lambda: sorted(set(_own_children()) - before)  # noqa: E731
    try:
        yield adopted
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        for pid in adopted():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


_PR_SET_CHILD_SUBREAPER = 36


def _own_children() -> list[int]:
    """This process's children, of every thread, zombies included (from /proc)."""
    found = []
    for thread in Path("/proc/self/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found += [int(pid) for pid in (thread / "children").read_text().split()]
    return found


def children_running(parent: int, marker: str) -> list[int]:
    """PIDs of live child processes of `parent` whose command line contains `marker`."""
    found = []
    for pid in processes_with(marker):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        if f"\nPPid:\t{parent}\n" in status:
            found.append(pid)
    return found


def exactly_once(experiment_dir: Path, expected: dict[int, str]) -> None:
    """Every task has exactly one done record, and its committed stdout is what it printed."""
    done = [r["task_id"] for r in journal(experiment_dir) if r["outcome"] == "done"]
    duplicates = sorted({t for t in done if done.count(t) > 1})
    assert not duplicates, f"tasks committed twice: {duplicates}"
    assert sorted(done) == sorted(expected), f"missing: {sorted(set(expected) - set(done))}"
    for task_id, text in expected.items():
        assert (experiment_dir / str(task_id) / "stdout").read_text() == text, task_id
