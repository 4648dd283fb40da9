"""A run in the background: its log in the lab, finding the run that holds an experiment, stopping it.

    pataslab/<experiment>/run.log       the log of the latest `patas explore --detach` run
    pataslab/<experiment>/run.log.1     the one before (up to RUN_LOGS_KEPT logs are kept)

A detached run writes everything `patas explore` would show on the terminal into its log: the
plan, a progress line every few seconds, failures, the summary, and a last line with its exit
status. The log's first line names the run's pid, so a reader can tell the log of the run that
holds the experiment's lock (`patas.common.lab_lock`) from an older one. A run over several
experiments writes one log, in the first experiment's folder; the others' `run.log` is a link to it.

Stopping signals the lock's holder as Ctrl-C does (SIGINT), but only after making sure, through a
pidfd, that the process signalled is the one still holding the lock: a pid reused after the run
ended is never signalled.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from patas.common.errors import LabError
from patas.common.lab_lock import LockHolder, holder

RUN_LOG = "run.log"
RUN_LOGS_KEPT = 5  # run.log and run.log.1 .. run.log.4
# How long `stop` waits for the run to let its experiments go (it kills its tasks first).
STOP_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.1
# `attach` shows at most this much of a log's past before following it.
ATTACH_BACKLOG_BYTES = 64 * 1024
_HEADER = re.compile(rb"patas explore --detach: pid (\d+) on host (\S+)")
_END = re.compile(rb"Run ended: exit status (\d+)\.")


class NoRunError(LabError):
    """No run holds the experiment (or the lab) asked for."""


class StopError(LabError):
    """The run could not be signalled, or did not end in time."""


@dataclass(frozen=True)
class RunningRun:
    """The run holding an experiment's lock now."""

    folder: Path  # the experiment's folder
    holder: LockHolder

    @property
    def experiment(self) -> str:
        return self.folder.name

    @property
    def log_path(self) -> Path:
        return self.folder / RUN_LOG

    def has_log(self) -> bool:
        """True when the experiment's run.log is this run's (it was started with --detach)."""
        try:
            with open(self.log_path, "rb") as log:
                match = _HEADER.match(log.readline())
        except OSError:
            return False
        return match is not None and int(match.group(1)) == self.holder.pid

    def is_running(self) -> bool:
        now = holder(self.folder)
        return now is not None and (now.pid, now.since) == (self.holder.pid, self.holder.since)


# --- the log ---------------------------------------------------------------------------------


def open_run_log(folders: list[Path]) -> tuple[Path, int]:
    """Start this run's log: rotate the experiments' older logs, create a new one (its header
    line written), link it from the other experiments; the path and an fd open for appending."""
    first = folders[0]
    for folder in folders:
        _rotate(folder)
    path = first / RUN_LOG
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"patas explore --detach: pid {os.getpid()} on host {socket.gethostname()}, started {started}\n".encode())
        for folder in folders[1:]:
            os.symlink(os.path.relpath(path, folder), folder / RUN_LOG)
    except OSError as error:
        raise LabError(f"{path}: cannot write the run's log ({error.strerror})") from None
    return path, fd


def end_line(exit_status: int) -> str:
    """The log's last line: what `attach` exits with."""
    return f"Run ended: exit status {exit_status}."


def _rotate(folder: Path) -> None:
    oldest = folder / f"{RUN_LOG}.{RUN_LOGS_KEPT - 1}"
    try:
        oldest.unlink()
    except FileNotFoundError:
        pass
    for n in range(RUN_LOGS_KEPT - 2, -1, -1):
        source = folder / (RUN_LOG if n == 0 else f"{RUN_LOG}.{n}")
        if os.path.lexists(source):
            os.replace(source, folder / f"{RUN_LOG}.{n + 1}")


# --- finding a run ---------------------------------------------------------------------------


def find_run(lab_root: Path, experiment: str | None) -> RunningRun:
    """The run holding `experiment` in the lab, or the lab's only run when no experiment is named."""
    if experiment is not None:
        folder = lab_root / experiment
        if not folder.is_dir():
            raise NoRunError(f"{folder}: no such experiment (give one in {lab_root}, or -o for another lab)")
        found = holder(folder)
        if found is None:
            last = f"; {folder / RUN_LOG} is the last detached run's log" if (folder / RUN_LOG).exists() else ""
            raise NoRunError(f"no run holds {folder} (nothing runs there now{last})")
        return RunningRun(folder, found)
    if not lab_root.is_dir():
        raise NoRunError(f"{lab_root}: no such pataslab folder (use -o to name the folder patas explore wrote into)")
    runs = running_in(lab_root)
    if not runs:
        raise NoRunError(f"no run in {lab_root} (nothing runs there now; use -o for another lab)")
    pids = {run.holder.pid for run in runs}
    if len(pids) > 1:
        names = ", ".join(run.experiment for run in runs)
        raise NoRunError(f"{len(pids)} runs in {lab_root} ({names}); name the experiment, e.g. {runs[0].experiment}")
    return runs[0]


def running_in(lab_root: Path) -> list[RunningRun]:
    """Every experiment of the lab that a run holds now, by name."""
    try:
        entries = sorted(os.scandir(lab_root), key=lambda e: e.name)
    except OSError:
        return []
    runs = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            found = holder(Path(entry.path))
            if found is not None:
                runs.append(RunningRun(Path(entry.path), found))
    return runs


# --- following its log -----------------------------------------------------------------------


def follow_log(run: RunningRun, out: BinaryIO, poll_s: float = POLL_INTERVAL_S) -> int | None:
    """Copy the run's log to `out` (its recent past, then as it grows) until the run ends; the
    exit status its last line gives, or None when it ended without one (killed)."""
    if not run.has_log():
        raise NoRunError(
            f"the run in {run.folder} ({run.holder.describe()}) was not started with --detach:"
            " its progress is on its own terminal"
        )
    with open(run.log_path, "rb") as log:
        _skip_to_backlog(log, out)
        last = b""
        while True:
            ended = not run.is_running()  # looked at before reading, so nothing written before the end is missed
            chunk = log.read(ATTACH_BACKLOG_BYTES)
            while chunk:
                out.write(chunk)
                last = (last + chunk)[-4096:]
                chunk = log.read(ATTACH_BACKLOG_BYTES)
            out.flush()
            if ended:
                return _exit_status(last)
            time.sleep(poll_s)


def _skip_to_backlog(log: BinaryIO, out: BinaryIO) -> None:
    size = os.fstat(log.fileno()).st_size
    if size <= ATTACH_BACKLOG_BYTES:
        return
    log.seek(size - ATTACH_BACKLOG_BYTES)
    log.readline()  # to a line's start
    out.write(f"(… earlier lines in {log.name})\n".encode())


def _exit_status(tail: bytes) -> int | None:
    found = _END.findall(tail)
    return int(found[-1]) if found else None


# --- stopping it -----------------------------------------------------------------------------


def stop_run(run: RunningRun, timeout_s: float = STOP_TIMEOUT_S, waiting: Callable[[], None] = lambda: None) -> None:
    """End the run as Ctrl-C does and wait until it has let its experiments go.

    `waiting` is called once the signal is sent. Raises StopError when the run is another user's,
    runs on another host, or does not end within `timeout_s`."""
    if run.holder.host != socket.gethostname():
        raise StopError(f"the run in {run.folder} runs on host {run.holder.host} (pid {run.holder.pid}); stop it there")
    assert run.holder.pid is not None
    _signal_holder(run, signal.SIGINT)
    waiting()
    deadline = time.monotonic() + timeout_s
    while run.is_running():
        if time.monotonic() > deadline:
            raise StopError(
                f"the run in {run.folder} (pid {run.holder.pid}) still runs after {timeout_s:.0f} s;"
                f" `patas stop` again stops waiting for its tasks, or `kill -KILL {run.holder.pid}`"
                " (its unfinished tasks are not counted either way)"
            )
        time.sleep(POLL_INTERVAL_S)


def _signal_holder(run: RunningRun, signum: int) -> None:
    pid = run.holder.pid
    assert pid is not None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # it has just ended
    except OSError as error:
        raise StopError(f"cannot reach the run in {run.folder} (pid {pid}): {error.strerror}") from None
    try:
        # The pidfd names one process for good; the lock held now proves it is the run's.
        if not run.is_running():
            return
        signal.pidfd_send_signal(pidfd, signum)
    except PermissionError:
        raise StopError(
            f"the run in {run.folder} (pid {pid}) belongs to another user: only that user (or root) can stop it"
        ) from None
    except ProcessLookupError:
        return
    finally:
        os.close(pidfd)

