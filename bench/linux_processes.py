"""What the benchmarks read about running processes from Linux's /proc: children, CPU time,
memory, and whether a process seen earlier is still the same running process."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessId:
    """A pid and its start time, so a reused pid is never taken for the process seen before."""

    pid: int
    start_ticks: str
    command: str


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, ...]; None if the pid is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def process_id(pid: int) -> ProcessId | None:
    """The running (not zombie) process `pid`, or None."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    return ProcessId(pid, fields[19], command)


def still_running(process: ProcessId) -> bool:
    current = process_id(process.pid)
    return current is not None and current.start_ticks == process.start_ticks


def cpu_seconds(process: ProcessId) -> float | None:
    """User + system CPU the process itself has used (not its children), if it still runs."""
    fields = _stat_fields(process.pid)
    if fields is None or fields[19] != process.start_ticks:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def child_pids(pid: int) -> list[int]:
    """The children of every thread of `pid`; none if it has exited meanwhile."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:  # gone between its parent's listing and this one
        return []
    children = []
    for thread in threads:
        try:
            children += [int(c) for c in Path(f"/proc/{pid}/task/{thread}/children").read_text().split()]
        except OSError:
            pass
    return children


def descendants(pid: int) -> Iterator[ProcessId]:
    for child in child_pids(pid):
        identity = process_id(child)
        if identity is not None:
            yield identity
            yield from descendants(child)


def memory_kb(pid: int) -> dict[str, int]:
    """The kB fields of /proc/<pid>/status: VmRSS, VmHWM (peak RSS), ..."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if value.strip().endswith(" kB"):
                fields[key] = int(value.split()[0])
    except OSError:
        pass
    return fields


def kill(process: ProcessId) -> None:
    """SIGKILL this very process (by pid, checked against its start time)."""
    if still_running(process):
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
