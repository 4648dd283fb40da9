"""Making finished attempts durable without stalling the run loop.

Committing an attempt means: flush its files, fdatasync them, rename them into place, remove
every committed stream it did not write (a `stderr` left by an earlier attempt), put its
collected files' folder in place of the task's `files/` (see `task_files`), and only then
append its journal record. fdatasync waits for the disk, so a background thread does it, in the
order the loop hands attempts over. The loop is told of a failure (disk full, say) at its next
turn; an attempt whose commit failed is never journaled, so it never counts as done.

Group commit. Each fdatasync of a small new file costs a disk cache flush (3-5 ms here, done
one after another), while fdatasyncs issued at once share their flushes (0.4-0.6 ms a file in
groups of 64, measured on this machine's ext4). So the thread takes every batch waiting for it as
one group (the batches of all the loop turns that passed while the disk was busy), flushes all
of the group's files, fdatasyncs them together from SYNC_THREADS threads, and only once every
one of them is durable renames them into place and appends the group's records in one write.

Why a crash can never leave a done task whose streams come from two attempts: while an attempt's
files are renamed and removed, no `done` record may vouch for the folder. A first commit has
none yet: a crash anywhere before its record is appended leaves a task that is not done, and
its next commit replaces every stream again. When committed output is already there (--redo,
or a crash mid-commit), a `replacing` record is appended and made durable first; it voids every
earlier `done` record of the task, and only then are the files touched. So at every instant
the journal either vouches for a folder whose files all come from the attempt it names, or
says the task is not done.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, TypeVar

from patas.common.errors import LabError, refused_file
from patas.common.lab import AttemptRecord, Outcome

if TYPE_CHECKING:
    from patas.broker.run.task_files import FilesCommit

T = TypeVar("T")

# Batches (one per loop turn) waiting for the thread; beyond this the loop waits for the disk.
MAX_PENDING_BATCHES = 64
# How many fdatasyncs of a group are in flight at once: enough for the disk to share its cache
# flushes among them (8 and 32 measured alike, 1 five to ten times slower a file).
SYNC_THREADS = 8


@dataclass(frozen=True)
class OutputFile:
    # Written here, or opened for reading on a file a local agent's task wrote itself (fdatasync
    # makes the file's data durable whichever descriptor wrote it).
    handle: IO[bytes]
    path: str
    target: str | None  # where it goes when committed; None: it stays where it is


@dataclass(frozen=True)
class Commit:
    files: tuple[OutputFile, ...]
    journal: int  # index of the experiment's journal
    record: AttemptRecord  # journaled once the files are in place
    stale: tuple[str, ...] = ()  # committed streams this attempt did not write: removed
    collected: FilesCommit | None = None  # its collected files, replacing the task's `files`

    @property
    def commits(self) -> bool:
        return any(output.target is not None for output in self.files)


class Committer:
    def __init__(self, journal_paths: list[Path], sync: bool, notify: bool = False, first: Callable[[], None] | None = None) -> None:
        """`first` is done on the thread before it opens the journals and commits anything (the
        run's definitions: the run loop hands out its first tasks meanwhile); a LabError it
        raises fails the run at the loop's next turn, before any attempt is journaled."""
        self._paths = journal_paths
        self._sync = sync
        self._first = first
        # With `notify`, the records appended so far, for the run loop to take (a search tells
        # its sampler a result only once it is durable); a grid's run does not pay for it.
        self._committed: queue.SimpleQueue[AttemptRecord] | None = queue.SimpleQueue() if notify else None
        self._journals: list[int] = []  # opened on the thread, after `first`
        self._batches: queue.Queue[list[Commit] | None] = queue.Queue(MAX_PENDING_BATCHES)
        self._syncing = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="patas-sync") if sync else None
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
        if self._syncing is not None:
            self._syncing.shutdown()
        for fd in self._journals:
            if self._sync and self._error is None:
                os.fsync(fd)
            os.close(fd)
        self.check()

    def _work(self) -> None:
        try:
            if self._first is not None:
                self._first()
            self._journals = [guard(lambda p=p: _open_journal(p), p) for p in self._paths]
        except LabError as error:
            self._error = error
        closing = False
        while not closing:
            group, closing = self._next_group()
            if self._error is not None:
                _close_quietly(group)
                continue
            try:
                self._commit(group)
            except LabError as error:
                self._error = error
                _close_quietly(group)

    def _next_group(self) -> tuple[list[Commit], bool]:
        """Every batch waiting now, in order (waiting for one if none is); True once `close`
        was asked (nothing comes after its marker)."""
        group: list[Commit] = []
        batch = self._batches.get()
        while batch is not None:
            group += batch
            try:
                batch = self._batches.get_nowait()
            except queue.Empty:
                return group, False
        return group, True

    def _commit(self, batch: list[Commit]) -> None:
        replacing = [c for c in batch if c.commits and _has_committed_output(c)]
        if replacing:
            self._append([replace(c.record, outcome=Outcome.REPLACING) for c in replacing], [c.journal for c in replacing])
            for journal in {c.journal for c in replacing}:
                if self._sync:
                    guard(lambda: os.fsync(self._journals[journal]), self._paths[journal])
        self._make_outputs_durable(batch)
        for commit in batch:
            for output in commit.files:
                guard(lambda: _place(output), output.path)
            for path in commit.stale:
                guard(lambda: _remove(path), path)
            collected = commit.collected
            if collected is not None:
                guard(lambda: collected.apply(self._sync), collected.target)
        self._append([c.record for c in batch], [c.journal for c in batch])
        if self._committed is not None:
            self._make_durable({c.journal for c in batch})
            for commit in batch:
                self._committed.put(commit.record)

    def _make_durable(self, journals: set[int]) -> None:
        if self._sync:
            for journal in journals:
                guard(lambda: os.fsync(self._journals[journal]), self._paths[journal])

    def take_committed(self) -> list[AttemptRecord]:
        """The records appended (and fsynced) since the last call; empty without `notify`."""
        records: list[AttemptRecord] = []
        while self._committed is not None and not self._committed.empty():
            records.append(self._committed.get_nowait())
        return records

    def _append(self, records: list[AttemptRecord], journals: list[int]) -> None:
        lines: dict[int, list[str]] = {}
        for record, journal in zip(records, journals):
            lines.setdefault(journal, []).append(record.to_json() + "\n")
        for journal, texts in lines.items():
            data = "".join(texts).encode()
            guard(lambda: _write_all(self._journals[journal], data), self._paths[journal])

    def _make_outputs_durable(self, batch: list[Commit]) -> None:
        """Flush every open output of the batch; fdatasync those to be committed, all at once."""
        committed = []
        for commit in batch:
            for output in commit.files:
                if not output.handle.closed:
                    guard(output.handle.flush, output.path)
                    if output.target is not None:
                        committed.append(output)
        if self._syncing is None or not committed:
            return
        if len(committed) == 1:  # nothing to share a flush with: no thread hand-off
            guard(lambda: os.fdatasync(committed[0].handle.fileno()), committed[0].path)
            return
        syncs = [(output, self._syncing.submit(_datasync, output.handle.fileno())) for output in committed]
        failure = None
        for output, done in syncs:  # every one is waited for, so that none runs on after an error
            error = done.result()
            if error is not None and failure is None:
                failure = lab_error(error, output.path)
        if failure is not None:
            raise failure


def _datasync(fd: int) -> OSError | None:
    try:
        os.fdatasync(fd)
        return None
    except OSError as error:
        return error


def _place(output: OutputFile) -> None:
    """Close a flushed (and, if it is committed, durable) output and rename it into place."""
    if output.handle.closed:
        return
    output.handle.close()
    if output.target is not None:
        os.replace(output.path, output.target)


def _has_committed_output(commit: Commit) -> bool:
    targets = [output.target for output in commit.files if output.target is not None]
    if commit.collected is not None:
        targets.append(commit.collected.target)
    return any(os.path.lexists(path) for path in (*targets, *commit.stale))


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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


_HINTS = {
    errno.ENOSPC: " (free some space, or use -o to write elsewhere)",
    errno.ENOTDIR: " (a file is in the way of a folder on that path: move it away)",  # pataslab/grid/0 a file
}


def lab_error(error: OSError, path: str | Path) -> LabError:
    """The error as one line naming the file at fault: the one the failed call was about, if
    the error says (writing `path` may fail on its temporary file, a rename on its target),
    else `path`."""
    reason = error.strerror or str(error)
    hint = _HINTS.get(error.errno or 0, "")
    return LabError(f"{refused_file(error, path)}: {reason}{hint}")
