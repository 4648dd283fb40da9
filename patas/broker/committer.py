"""Making finished attempts durable without stalling the run loop.

Committing an attempt means: flush its files, fdatasync them, rename them into place, and only
then append its journal record. fdatasync waits for the disk (about a quarter of a millisecond
per file here, more under load), so a background thread does it, batch by batch, in the order the
loop hands them over. The loop is told of a failure (disk full, say) at its next turn; an attempt
whose commit failed is never journaled, so it never counts as done.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, TypeVar

from patas.common.errors import LabError

T = TypeVar("T")

# Batches (one per loop turn) waiting for the thread; beyond this the loop waits for the disk.
MAX_PENDING_BATCHES = 64


@dataclass(frozen=True)
class OutputFile:
    handle: IO[bytes]
    path: str
    target: str | None  # where it goes when committed; None: it stays where it is


@dataclass(frozen=True)
class Commit:
    files: tuple[OutputFile, ...]
    journal: int  # index of the experiment's journal
    line: str  # the attempt's journal record, with its newline


class Committer:
    def __init__(self, journal_paths: list[Path], sync: bool) -> None:
        self._paths = journal_paths
        self._sync = sync
        self._journals = [guard(lambda p=p: _open_journal(p), p) for p in journal_paths]
        self._batches: queue.Queue[list[Commit] | None] = queue.Queue(MAX_PENDING_BATCHES)
        self._error: LabError | None = None
        self._thread = threading.Thread(target=self._work, name="patas-committer", daemon=True)
        self._thread.start()

    def submit(self, batch: list[Commit]) -> None:
        """Queue a batch; raise the error of an earlier batch, if one failed."""
        self.check()
        if batch:
            self._batches.put(batch)

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Finish every queued batch, then make the journals durable."""
        self._batches.put(None)
        self._thread.join()
        for fd in self._journals:
            if self._sync and self._error is None:
                os.fsync(fd)
            os.close(fd)
        self.check()

    def _work(self) -> None:
        while (batch := self._batches.get()) is not None:
            if self._error is not None:
                _close_quietly(batch)
                continue
            try:
                self._commit(batch)
            except LabError as error:
                self._error = error
                _close_quietly(batch)

    def _commit(self, batch: list[Commit]) -> None:
        lines: dict[int, list[str]] = {}
        for commit in batch:
            for output in commit.files:
                guard(lambda: self._finish(output), output.path)
            lines.setdefault(commit.journal, []).append(commit.line)
        for journal, records in lines.items():
            data = "".join(records).encode()
            guard(lambda: _write_all(self._journals[journal], data), self._paths[journal])

    def _finish(self, output: OutputFile) -> None:
        if output.handle.closed:
            return
        output.handle.flush()
        if self._sync and output.target is not None:
            os.fdatasync(output.handle.fileno())
        output.handle.close()
        if output.target is not None:
            os.replace(output.path, output.target)


def _close_quietly(batch: list[Commit]) -> None:
    for commit in batch:
        for output in commit.files:
            try:
                output.handle.close()
            except OSError:
                pass


def _open_journal(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def guard(action: Callable[[], T], path: str | Path) -> T:
    """Run a file operation; turn an OS error into a LabError naming the path and the fix."""
    try:
        return action()
    except OSError as error:
        raise lab_error(error, path) from error


def lab_error(error: OSError, path: str | Path) -> LabError:
    reason = error.strerror or str(error)
    hint = " (free some space, or use -o to write elsewhere)" if error.errno == errno.ENOSPC else ""
    return LabError(f"{path}: {reason}{hint}")
