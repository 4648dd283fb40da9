"""Writing task output into the pataslab as it streams in, and committing it.

Each running attempt writes into `<task_id>/attempt-<n>.stdout` (and `.stderr`, created only when
the task writes to stderr), and the files it collects into `<task_id>/attempt-<n>.files/`. When
the attempt succeeds its files are flushed to disk and renamed to `stdout`/`stderr` and `files/`,
a committed stream it did not write is removed, and only then is its `done` record appended to
the journal (see `committer`). A failed or interrupted attempt's files stay as
they are. Output is never held in memory beyond the chunk being written, apart from a short tail
kept to show the user why an attempt failed.

An agent the coordinator started on this machine does not stream stdout: the coordinator hands
it the attempt's stdout path (`write_stdout_directly`) and the agent makes that file the task's
stdout, so the bytes go from the task to the lab's page cache with no copy in between and are in
the file as soon as the task writes them. At the attempt's end the coordinator opens the file by
path (`_adopt`), takes its size and tail from it, and commits it exactly as it commits streamed
ones: fdatasync, rename, journal after. Stderr streams as before (created only when written).

A streamed attempt's output reaches its file within OUTPUT_FLUSH_INTERVAL_S of arriving, however
little the task prints, so that `patas logs -f` (or `tail -f`) shows it as it is printed: files
that received data are flushed together at the end of a loop turn once the interval has passed,
not after every chunk (a system call per small chunk would cost throughput).

A task's folder is made off the run loop: `open` asks a thread of its own to make it (a mkdir
costs 0.1 ms on a quiet disk here and 0.7 ms of CPU on a busy one, per task, when the loop does
it), and the first file the attempt writes there makes it on the spot if the thread has not yet
(`FoldersAhead.ensure`), so no write ever waits for that thread. A folder made for an attempt that
never writes (stopped before it ran) stays empty, as before: only a journal record counts a task.

The store is opened when the run starts (its socket bound, its first agent ready): that is when
each experiment's definition is recorded and its journal opened, so a run that fails before it
starts leaves the lab as it was.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from patas.broker.run.committer import Commit, Committer, OutputFile, guard, lab_error
from patas.broker.run.task_files import FILES, FilesCommit, ReceivedFiles, staging_path
from patas.common.lab import STDERR, STDOUT, STREAMS, AttemptRecord, ExperimentLab

# How much of each stream's end is kept in memory to show with a failure.
TAIL_BYTES = 2048
# The longest a running attempt's output waits in the coordinator's file buffers.
OUTPUT_FLUSH_INTERVAL_S = 0.5
# A task that wrote into the lab itself and ended while the lab's disk had less than this left
# may have lost output for want of space (a write fails once less than a block is left).
FULL_DISK_BYTES = 64 * 1024


@dataclass(eq=False)  # one of a kind: compared by identity
class OpenAttempt:
    """An attempt being written. Paths are plain strings: this runs for every task, and pathlib
    objects cost more than the system calls they name."""

    experiment_id: int
    folder: str  # the task's folder
    attempt: int
    files: dict[str, IO[bytes]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=lambda: {STDOUT: 0, STDERR: 0})
    tails: dict[str, bytes] = field(default_factory=lambda: {STDOUT: b"", STDERR: b""})
    collect_limit_bytes: int = 0  # 0: the experiment collects no files
    received: ReceivedFiles | None = None  # its collected files, once the first arrives
    direct: bool = False  # its agent writes its stdout file itself (see write_stdout_directly)
    adopted: bool = False  # that file is open here (see OutputStore._adopt)

    def path(self, stream: str) -> str:
        return f"{self.folder}/attempt-{self.attempt}.{stream}"

    def committed_path(self, stream: str) -> str:
        return f"{self.folder}/{stream}"


class FoldersAhead:
    """Makes task folders on a thread of its own, ahead of their first file."""

    def __init__(self) -> None:
        self._wanted: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self._requested: list[str] = []  # this loop turn's, handed over together at its end
        self._thread = threading.Thread(target=self._work, name="patas-folders", daemon=True)
        self._thread.start()

    def request(self, folder: str) -> None:
        self._requested.append(folder)

    def hand_over(self) -> None:
        """Give the thread this turn's folders in one go (one wake-up a turn, not one a task)."""
        if self._requested:
            self._wanted.put(self._requested)
            self._requested = []

    @staticmethod
    def ensure(folder: str) -> None:
        """The folder exists once this returns (made now if the thread has not made it yet);
        raises LabError if it cannot be made. Where the thread made it, this is one mkdir that
        fails at once: no state shared with the thread to keep."""
        try:
            os.mkdir(folder)
        except FileExistsError:
            pass  # the thread's, or an earlier attempt's
        except OSError as error:
            raise lab_error(error, folder) from error

    def close(self) -> None:
        self._requested = []
        self._wanted.put(None)
        self._thread.join()

    def _work(self) -> None:
        while (folders := self._wanted.get()) is not None:
            for folder in folders:
                try:
                    os.mkdir(folder)
                except OSError:
                    pass  # there already; or `ensure` tries again at the first write, and reports it


class OutputStore:
    """The open attempts of a run, by lease id; finished ones go to the committer each turn."""

    def __init__(self, labs: list[ExperimentLab], definitions: list[dict[str, Any]], sync: bool = True, notify: bool = False) -> None:
        self._labs = labs
        self._open: dict[int, OpenAttempt] = {}
        self._batch: list[Commit] = []
        self._unflushed: set[IO[bytes]] = set()  # files written to since the last flush
        self._next_flush = 0.0  # time.monotonic() at which they are due
        for lab in labs:  # before any task's folder is made in it
            guard(lambda: lab.path.mkdir(parents=True, exist_ok=True), lab.path)
        self._folders = [str(lab.path) for lab in labs]
        self._ahead = FoldersAhead()
        # The definitions are written (~20 ms: PyYAML's import, an fsync) while the first tasks run.
        first = lambda: record_definitions(labs, definitions)  # noqa: E731
        self._committer = Committer([lab.journal_path for lab in labs], sync, notify, first)

    def open(self, lease_id: int, experiment_id: int, task_id: int, attempt: int, collect_limit_bytes: int = 0) -> None:
        folder = f"{self._folders[experiment_id]}/{task_id}"
        self._ahead.request(folder)
        self._open[lease_id] = OpenAttempt(experiment_id, folder, attempt, collect_limit_bytes=collect_limit_bytes)

    def write_stdout_directly(self, lease_id: int) -> str:
        """The absolute path of the stdout file the attempt's agent is to write itself; only for
        agents on this machine that this coordinator started. Stdout streamed for the attempt is
        dropped from then on: the file is the agent's until the attempt ends."""
        attempt = self._open[lease_id]
        attempt.direct = True
        return os.path.abspath(attempt.path(STDOUT))

    def write(self, lease_id: int, stream_index: int, data: bytes) -> None:
        attempt = self._open[lease_id]
        if not data or (attempt.direct and stream_index == 0):
            return
        stream = STREAMS[stream_index]
        handle = attempt.files.get(stream) or self._create(attempt, stream)
        try:
            handle.write(data)
        except OSError as error:  # the path is built only when needed: this runs per chunk
            raise lab_error(error, attempt.path(stream)) from error
        self._unflushed.add(handle)
        attempt.sizes[stream] += len(data)
        attempt.tails[stream] = (attempt.tails[stream] + data[-TAIL_BYTES:])[-TAIL_BYTES:]

    def _create(self, attempt: OpenAttempt, stream: str) -> IO[bytes]:
        if not attempt.files:
            self._ahead.ensure(attempt.folder)
        handle = attempt.files[stream] = guard(lambda: open(attempt.path(stream), "wb"), attempt.path(stream))
        return handle

    def write_file(self, lease_id: int, path: bytes, offset: int, eof: bool, data: bytes) -> None:
        """Write a chunk of a file the attempt collected (see task_files)."""
        attempt = self._open[lease_id]
        if attempt.received is None:
            attempt.received = ReceivedFiles(staging_path(attempt.folder, attempt.attempt), attempt.collect_limit_bytes)
            if not attempt.collect_limit_bytes:
                attempt.received.refuse("files though the experiment collects none")
        attempt.received.write(path, offset, eof, data)

    def files_error(self, lease_id: int, announced: int) -> str:
        """Why the attempt's collected files are not all here, whole and valid ('' if they are)."""
        received = self._open[lease_id].received
        if received is None:
            return f"its node announced {announced} collected file(s) but none arrived" if announced else ""
        return received.finish(announced)

    def tail(self, lease_id: int, stream: str, ended: bool = False) -> bytes:
        """The end of what the attempt wrote to `stream` so far (`ended`: it has ended, all
        its processes are gone)."""
        attempt = self._open[lease_id]
        if not attempt.direct or stream == STDERR:
            return attempt.tails[stream]
        if not ended:
            return _file_tail(attempt.path(stream))  # the file its task is writing
        self._adopt(attempt)
        handle = attempt.files.get(stream)
        if handle is None:
            return b""
        start = max(0, attempt.sizes[stream] - TAIL_BYTES)
        return guard(lambda: os.pread(handle.fileno(), TAIL_BYTES, start), attempt.path(stream))

    def _adopt(self, attempt: OpenAttempt) -> None:
        """Open the stdout file an agent wrote for an attempt that has ended (its processes are
        all gone), for its size and for the commit."""
        if attempt.adopted:
            return
        attempt.adopted = True
        path = attempt.path(STDOUT)
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            return  # the agent could not create it, and said so in the attempt's error
        except OSError as error:
            raise lab_error(error, path) from error
        attempt.files[STDOUT] = handle
        attempt.sizes[STDOUT] = guard(lambda: os.fstat(handle.fileno()).st_size, path)

    @staticmethod
    def _drop_empty_stdout(attempt: OpenAttempt) -> None:
        """Remove the stdout file the agent created for an attempt that printed nothing and does
        not commit: a streamed attempt that printed nothing has none."""
        handle = attempt.files.get(STDOUT)
        if handle is not None and attempt.sizes[STDOUT] == 0:
            handle.close()
            del attempt.files[STDOUT]
            guard(lambda: os.unlink(attempt.path(STDOUT)), attempt.path(STDOUT))

    def close(self, lease_id: int, record: AttemptRecord, commit: bool) -> None:
        """End an attempt: commit its output if `commit`, and journal its record either way."""
        attempt = self._open.pop(lease_id)
        if attempt.direct:
            self._adopt(attempt)
            # The task's own writes may have failed for want of space, and a task may ignore
            # that: with the disk full, nothing it wrote is trusted (the run stops, as it does
            # when the coordinator's own write fails).
            _check_space(attempt.path(STDOUT))
            if not commit:
                self._drop_empty_stdout(attempt)
        self._forget_unflushed(attempt)  # the committer's thread flushes them now
        record.stdout_bytes, record.stderr_bytes = attempt.sizes[STDOUT], attempt.sizes[STDERR]
        if commit and STDOUT not in attempt.files:
            # A task that printed nothing still gets its (empty) stdout, so every done task has one.
            self._create(attempt, STDOUT)
        files = tuple(
            OutputFile(handle, attempt.path(stream), attempt.committed_path(stream) if commit else None)
            for stream, handle in attempt.files.items()
        )
        stale = tuple(attempt.committed_path(s) for s in STREAMS if s not in attempt.files) if commit else ()
        collected = None
        if attempt.received is not None:
            attempt.received.close()
        if commit:
            target = attempt.committed_path(FILES)
            collected = attempt.received.commit(target) if attempt.received else FilesCommit(None, target, ())
        self._batch.append(Commit(files, attempt.experiment_id, record, stale, collected))

    def abandon(self, lease_id: int) -> None:
        """Close an attempt that will never finish here (interrupted or fenced); its files stay."""
        attempt = self._open.pop(lease_id, None)
        if attempt is not None:
            self._forget_unflushed(attempt)
            if attempt.received is not None:
                attempt.received.close()
            for handle in attempt.files.values():
                try:
                    handle.close()
                except OSError:
                    pass  # flushing its last bytes failed (a full disk): it was never to count anyway

    def _forget_unflushed(self, attempt: OpenAttempt) -> None:
        for handle in attempt.files.values():
            self._unflushed.discard(handle)

    def end_turn(self) -> None:
        """Hand this turn's new task folders to their thread and its finished attempts to the
        committer, and when due, flush what running attempts wrote; raise if an earlier commit
        failed."""
        self._ahead.hand_over()
        batch, self._batch = self._batch, []
        self._committer.submit(batch)
        if self._unflushed:
            self._flush_when_due(time.monotonic())

    def _flush_when_due(self, now: float) -> None:
        if now < self._next_flush:
            return
        for handle in self._unflushed:
            try:
                handle.flush()
            except OSError as error:
                raise lab_error(error, handle.name) from error
        self._unflushed.clear()
        self._next_flush = now + OUTPUT_FLUSH_INTERVAL_S

    def committed(self) -> list[AttemptRecord]:
        """The records made durable since the last call (only when opened with `notify`)."""
        return self._committer.take_committed()

    def close_all(self) -> None:
        for lease_id in list(self._open):
            self.abandon(lease_id)
        self._ahead.close()
        self.end_turn()
        self._committer.close()


def _file_tail(path: str) -> bytes:
    """The last TAIL_BYTES of a file (nothing if it does not exist)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            return os.pread(handle.fileno(), TAIL_BYTES, max(0, size - TAIL_BYTES))
    except FileNotFoundError:
        return b""
    except OSError as error:
        raise lab_error(error, path) from error


def _check_space(path: str) -> None:
    """Raise the lab's ENOSPC error if the disk holding `path` is full (for this user: root may
    write into the blocks kept in reserve)."""
    try:
        disk = os.statvfs(os.path.dirname(path))
    except OSError:
        return
    blocks = disk.f_bfree if os.geteuid() == 0 else disk.f_bavail
    if blocks * disk.f_frsize < FULL_DISK_BYTES:
        raise lab_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path)


def record_definitions(labs: list[ExperimentLab], definitions: list[dict[str, Any]]) -> None:
    """Record what the user asked for, as the run is accepted: each experiment's definition.

    A torn last journal line is trimmed first, so the run's records start on a line of their own."""
    for lab, definition in zip(labs, definitions):
        guard(lambda: lab.path.mkdir(parents=True, exist_ok=True), lab.path)
        guard(lab.drop_torn_journal_line, lab.journal_path)
        guard(lambda: lab.write_definition(definition), lab.definition_path)
