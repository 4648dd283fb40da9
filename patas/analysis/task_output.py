"""A task's output in the pataslab: which file holds it now, and following it as the task runs.

A done task's output is its committed `stdout` (and `stderr`); a task that is not done (running,
failed, interrupted) has the files of its latest attempt, `attempt-<n>.stdout`. While a run
holds the experiment's lock (`patas.common.lab_lock`), following reads the attempt's file as the
coordinator writes it (at least every `patas.broker.run.outputs.OUTPUT_FLUSH_INTERVAL_S`) and the
journal as records are appended, and moves on to the next attempt when one fails and is tried again. It ends
when the task is done or given up, or when no run holds the lock any more.

The coordinator writes an attempt's last bytes, then renames or closes its files, and only then
appends its record; so once the journal says an attempt ended, its file is complete.

"Given up" is read from the journal as the scheduler decides it: a failed attempt that cannot run
at all (`cannot_run`), or the run's `max_tries`-th failure of the task. Tries count per run, so
only the records of the run holding the lock count: those that ended after it took the lock (the
agents' clocks against the coordinator's; a node whose clock runs far behind makes a record look
older, and following then waits for the run to end). An attempt lost with its node leaves no
record: following moves on when the next attempt's file appears.
"""

from __future__ import annotations

import enum
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from patas.broker.run.scheduler import cannot_run
from patas.common.errors import ConfigError, LabError
from patas.common.lab import AttemptRecord, ExperimentLab, NewerJournalError, Outcome, RecordError, experiments_in
from patas.common.lab_lock import LockHolder, holder

# How often a followed file, the journal and the lock are looked at.
POLL_INTERVAL_S = 0.1
# Bytes copied per read while following.
COPY_CHUNK_BYTES = 1024 * 1024
# An attempt's files, named as `ExperimentLab.attempt_path` names them.
_ATTEMPT_FILE = re.compile(r"attempt-(\d+)\.(?:stdout|stderr)\Z")


class TaskOutputError(LabError):
    """The experiment, task or attempt asked for is not in the lab."""


class Ending(enum.Enum):
    """Why following stopped."""

    DONE = "done"  # the task (or the attempt followed) succeeded
    FAILED = "failed"  # the task was given up (or the attempt followed failed)
    STOPPED = "stopped"  # no run is in progress, and the task is not done
    CANCELLED = "cancelled"  # the reader asked to stop (a dashboard page was closed)


@dataclass(frozen=True)
class Source:
    """Where one attempt's output of one stream is (the file may not exist: nothing written)."""

    path: Path | None  # None: the task has no attempt yet
    attempt: int | None


@dataclass(frozen=True)
class AttemptEnded:
    """An attempt ended while it was followed; `record` is None when it left none (lost)."""

    attempt: int
    record: AttemptRecord | None
    next_attempt: int | None  # the attempt followed from now on, if any

    def describe(self) -> str:
        how = "ended without a record (its node was lost or the run stopped)" if self.record is None else _how(self.record)
        then = f"; following attempt {self.next_attempt}" if self.next_attempt is not None else ""
        return f"attempt {self.attempt} {how}{then}"


def _how(record: AttemptRecord) -> str:
    if record.outcome is Outcome.DONE:
        return "succeeded"
    if record.outcome is Outcome.TIMEOUT:
        return "timed out"
    if record.outcome is Outcome.PRUNED:
        return "was pruned (its search stopped it early)"
    if record.error:
        return f"could not run ({record.error})"
    return f"failed (exit {record.exit_code})" if record.exit_code is not None else "failed (killed)"


@dataclass
class TaskHistory:
    """What the journal and the task's folder say about one task's attempts."""

    lab: ExperimentLab
    task_id: int
    records: list[AttemptRecord] = field(default_factory=list)
    on_disk: set[int] = field(default_factory=set)  # attempt numbers with files in the folder
    folder: bool = False  # the task's folder exists

    def look(self) -> None:
        """Read which attempts have files now."""
        try:
            names = os.listdir(self.lab.task_dir(self.task_id))
        except (FileNotFoundError, NotADirectoryError):
            self.folder, self.on_disk = False, set()
            return
        self.folder = True
        self.on_disk = {int(m.group(1)) for m in map(_ATTEMPT_FILE.match, names) if m}

    @property
    def exists(self) -> bool:
        return self.folder or bool(self.records)

    @property
    def attempts(self) -> set[int]:
        return self.on_disk | {r.attempt for r in self.records if r.outcome is not Outcome.REPLACING}

    @property
    def latest(self) -> int | None:
        return max(self.attempts, default=None)

    @property
    def done_attempt(self) -> int | None:
        """The attempt whose output is committed: its `done` record stands (no `replacing` after)."""
        done = None
        for record in self.records:
            if record.outcome in (Outcome.DONE, Outcome.PRUNED):  # a pruned attempt commits its output too
                done = record.attempt
            elif record.outcome is Outcome.REPLACING:
                done = None
        return done if self.folder else None

    def record_of(self, attempt: int) -> AttemptRecord | None:
        return next((r for r in reversed(self.records) if r.attempt == attempt and r.outcome is not Outcome.REPLACING), None)

    def given_up(self, run: LockHolder | None) -> bool:
        """True when the task's last attempt failed and the run holding the lock will not try it again."""
        if not self.records or self.records[-1].outcome not in (Outcome.FAILED, Outcome.TIMEOUT):
            return False
        since = run.since if run is not None and run.since is not None else float("inf")
        last = self.records[-1]
        if last.ended_at < since:
            return False  # an earlier run's: this one may try the task again
        if last.outcome is Outcome.FAILED and cannot_run(last.exit_code, last.error):
            return True
        tries = sum(1 for r in self.records if r.outcome in (Outcome.FAILED, Outcome.TIMEOUT) and r.ended_at >= since)
        return tries >= last.max_tries


class JournalTail:
    """The records of one task, read from the experiment's journal as lines are appended."""

    def __init__(self, lab: ExperimentLab, task_id: int) -> None:
        self.lab = lab
        self._offset = 0
        self._line = 0
        # Records as patas writes them begin with the task id: other tasks' lines are skipped unparsed.
        self._prefix = b'{"task_id":'
        self._mine = b'{"task_id":%d,' % task_id
        self.task_id = task_id

    def read(self) -> list[AttemptRecord]:
        """The task's records appended since the last call (complete lines only)."""
        try:
            with open(self.lab.journal_path, "rb") as stream:
                stream.seek(self._offset)
                return [record for line in stream if (record := self._take(line)) is not None]
        except FileNotFoundError:
            return []
        except OSError as error:
            raise LabError(f"{self.lab.journal_path}: {error.strerror} (restore the file or move {self.lab.path} away)") from None

    def _take(self, line: bytes) -> AttemptRecord | None:
        """The record of one line read, if it is whole and the task's (its end moves the offset)."""
        if not line.endswith(b"\n"):
            return None  # being appended: read again, whole, next time
        self._offset += len(line)
        self._line += 1
        if line.startswith(self._prefix) and not line.startswith(self._mine):
            return None
        record = self._parse(line)
        return record if record.task_id == self.task_id else None

    def _parse(self, line: bytes) -> AttemptRecord:
        try:
            return AttemptRecord.from_json(line)
        except NewerJournalError as error:
            raise LabError(f"{self.lab.journal_path}:{self._line}: {error}") from None
        except RecordError as error:
            raise LabError(
                f"{self.lab.journal_path}:{self._line}: unreadable journal line ({error}); restore the file or move {self.lab.path} away"
            ) from None


# --- where a task's output is -----------------------------------------------------------------


def experiment_lab(lab_root: Path, name: str) -> ExperimentLab:
    """The experiment folder `name` in the pataslab, or TaskOutputError naming the ones there are."""
    lab = ExperimentLab(lab_root, name)
    if lab.exists():
        return lab
    if not lab_root.is_dir():
        raise TaskOutputError(f"{lab_root}: no such pataslab folder (use -o to name the folder patas explore wrote into)")
    found = experiments_in(lab_root)
    there = f"experiments there: {', '.join(found)}" if found else "it holds no experiment"
    raise TaskOutputError(f"{lab.path}: no such experiment ({there}; give one of them, or -o for another lab)")


def read_history(lab: ExperimentLab, task_id: int) -> tuple[TaskHistory, JournalTail]:
    history = TaskHistory(lab, task_id)
    journal = JournalTail(lab, task_id)
    history.records.extend(journal.read())
    history.look()
    return history, journal


def locate(history: TaskHistory, stream: str, attempt: int | None, running: bool) -> Source:
    """The file that holds the task's output of `stream`: a given attempt's, or the done task's
    committed file (unless a run in progress runs the task again), or its latest attempt's."""
    lab, task_id = history.lab, history.task_id
    done = history.done_attempt
    if attempt is None:
        latest = history.latest
        if done is not None and not (running and latest is not None and latest > done):
            return Source(lab.committed_path(task_id, stream), done)
        attempt = latest
    elif attempt not in history.attempts:
        known = sorted(history.attempts)
        has = f"its attempts: {_span(known)}" if known else "it has no attempt yet"
        raise TaskOutputError(f"task {task_id} of {lab.path} has no attempt {attempt} ({has}; leave --attempt out for the latest)")
    elif attempt == done:
        return Source(lab.committed_path(task_id, stream), done)
    if attempt is None:
        return Source(None, None)
    return Source(lab.attempt_path(task_id, attempt, stream), attempt)


def check_task(history: TaskHistory, running: bool, following: bool) -> None:
    """Refuse a task that is not in the lab: unknown, or (unless waited for) not started yet."""
    if history.exists:
        return
    lab, task_id = history.lab, history.task_id
    size = _grid_size(lab)
    if running and (size is None or task_id < size):
        if following:
            return  # it may start at any moment
        raise TaskOutputError(f"task {task_id} of {lab.path} has not started yet (add -f to wait for its output)")
    folders = lab.task_folders()
    last = max(max(folders, default=-1), (size or 0) - 1)
    first = 0 if size else min(folders, default=0)
    has = f"its task ids: {first} to {last}" if last > first else f"its task id: {last}" if last >= 0 else "it has no task yet"
    raise TaskOutputError(f"{lab.path} has no task {task_id} ({has})")


def _grid_size(lab: ExperimentLab) -> int | None:
    """How many tasks the recorded definition has (None if it cannot be read)."""
    from patas.common.config import load_experiment

    try:
        return load_experiment(lab.definition_path).task_count
    except (ConfigError, OSError):
        return None


def _span(numbers: list[int]) -> str:
    """`1 to 3` for a sorted run of numbers, `0` for one, `1, 3` otherwise."""
    first, last = numbers[0], numbers[-1]
    if first == last:
        return str(first)
    return f"{first} to {last}" if numbers == list(range(first, last + 1)) else ", ".join(map(str, numbers))


def copy_file(path: Path, out: BinaryIO) -> int:
    """Copy a whole output file to `out`; a stream never written is empty. Returns the bytes copied."""
    copied = 0
    try:
        with open(path, "rb") as source:
            while chunk := source.read(COPY_CHUNK_BYTES):
                out.write(chunk)
                copied += len(chunk)
    except FileNotFoundError:
        return 0
    except OSError as error:
        raise LabError(f"{path}: {error.strerror}") from None
    out.flush()
    return copied


# --- following --------------------------------------------------------------------------------


class FileTail:
    """Copies what is appended to a file; the file may appear later, or be renamed (committed)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: nothing to copy yet
        self.offset = 0
        self._file: BinaryIO | None = None

    def retarget(self, path: Path) -> None:
        """The same output under a new name (committed): an open file stays open (same inode)."""
        self.path = path

    def copy(self, out: BinaryIO) -> None:
        """Copy what was appended since the last call."""
        if self._file is None:
            if self.path is None:
                return
            try:
                self._file = open(self.path, "rb")
            except FileNotFoundError:
                return  # not written yet (or being renamed as it is committed)
            self._file.seek(self.offset)
        copied = 0
        while chunk := self._file.read(COPY_CHUNK_BYTES):
            out.write(chunk)
            copied += len(chunk)
        self.offset += copied
        if copied:
            out.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class Follower:
    """Follows one stream of one task (or of one attempt, given `pinned`) until it ends."""

    history: TaskHistory
    journal: JournalTail
    stream: str
    out: BinaryIO
    on_attempt_ended: Callable[[AttemptEnded], None]
    pinned: int | None = None  # follow this attempt only
    current: int | None = None  # the attempt followed now (None: none has started)
    stop: threading.Event | None = None  # set by another thread to end following at once

    def run(self) -> Ending:
        run = holder(self.history.lab.path)
        source = locate(self.history, self.stream, self.pinned, run is not None)
        tail = FileTail(source.path)
        current = source.attempt
        try:
            while True:
                # The lock first: once it is free, the journal and files read next are complete.
                run = holder(self.history.lab.path)
                self.history.records.extend(self.journal.read())
                self.history.look()
                done = self.history.done_attempt
                if done is not None and done == current:
                    tail.retarget(self.history.lab.committed_path(self.history.task_id, self.stream))
                tail.copy(self.out)
                ending, current, tail = self._step(current, tail, run)
                self.current = current
                if ending is not None:
                    return ending
                if self.stop is None:
                    time.sleep(POLL_INTERVAL_S)
                elif self.stop.wait(POLL_INTERVAL_S):
                    return Ending.CANCELLED
        finally:
            tail.close()

    def _step(self, current: int | None, tail: FileTail, run: LockHolder | None) -> tuple[Ending | None, int | None, FileTail]:
        """What the latest look says: an ending, or the attempt to follow now (and its file)."""
        history = self.history
        done = history.done_attempt
        if done is not None and done == current:
            return Ending.DONE, current, tail
        record = history.record_of(current) if current is not None else None
        newer = max((a for a in history.attempts if current is None or a > current), default=None)
        if self.pinned is not None:
            if record is not None or newer is not None:
                return (Ending.DONE if record is not None and record.outcome is Outcome.DONE else Ending.FAILED), current, tail
            return (Ending.STOPPED if run is None else None), current, tail
        if newer is not None:
            if current is not None:
                self.on_attempt_ended(AttemptEnded(current, record, newer))
            tail.close()
            tail = FileTail(self._path_of(newer))
            tail.copy(self.out)
            return self._step(newer, tail, run)
        if record is not None and history.given_up(run):
            return Ending.FAILED, current, tail
        return (Ending.STOPPED if run is None else None), current, tail

    def _path_of(self, attempt: int) -> Path:
        lab, task_id = self.history.lab, self.history.task_id
        if attempt == self.history.done_attempt:
            return lab.committed_path(task_id, self.stream)
        return lab.attempt_path(task_id, attempt, self.stream)


# --- the two ways to read a task's output ---------------------------------------------------


@dataclass(frozen=True)
class Followed:
    """How following a task ended."""

    ending: Ending
    lab: ExperimentLab
    task_id: int
    attempt: int | None  # the attempt followed last
    record: AttemptRecord | None  # its record, if it has one
    pinned: bool  # one attempt was followed, not the task

    def describe(self) -> str:
        """One line for the user; empty when the task (or attempt) succeeded."""
        how = _how(self.record) if self.record is not None else "ended without a record"
        if self.ending in (Ending.DONE, Ending.CANCELLED):
            return ""
        if self.ending is Ending.FAILED:
            if self.pinned:
                return f"attempt {self.attempt} of task {self.task_id} {how}"
            return f"task {self.task_id} of {self.lab.path} was given up: attempt {self.attempt} {how}"
        last = f" (attempt {self.attempt} {how})" if self.attempt is not None and self.record is not None else ""
        return (
            f"no run is in progress in {self.lab.path}, and task {self.task_id} is not done{last};"
            " run the same patas explore again to finish it"
        )


def show_output(lab_root: Path, experiment: str, task_id: int, stream: str, out: BinaryIO, attempt: int | None = None) -> str | None:
    """Copy the task's output of `stream` to `out`: its committed output when it is done, else
    its latest attempt's so far (or attempt `attempt`'s). Returns a note when there is nothing
    yet: the attempt has not ended and has written nothing to `stream` (queued on its agent, or
    silent so far), so that an empty answer is not taken for an empty output."""
    lab = experiment_lab(lab_root, experiment)
    history, _ = read_history(lab, task_id)
    running = holder(lab.path) is not None
    check_task(history, running, following=False)
    source = locate(history, stream, attempt, running)
    copied = copy_file(source.path, out) if source.path is not None else 0
    ended = source.attempt is not None and history.record_of(source.attempt) is not None
    if copied or ended or not running:
        return None
    return f"task {task_id} of {lab.path} has printed nothing to {stream} yet (add -f to wait for its output)"


def follow_output(
    lab_root: Path, experiment: str, task_id: int, stream: str, out: BinaryIO,
    on_attempt_ended: Callable[[AttemptEnded], None], attempt: int | None = None,
    stop: threading.Event | None = None,
) -> Followed:  # fmt: skip
    """Copy the task's output to `out` as it is written, until the task is done or given up (or
    attempt `attempt` ends), or no run is in progress, or `stop` is set (by another thread); from
    one attempt to the next on retries."""
    lab = experiment_lab(lab_root, experiment)
    history, journal = read_history(lab, task_id)
    check_task(history, holder(lab.path) is not None, following=True)
    follower = Follower(history, journal, stream, out, on_attempt_ended, pinned=attempt, stop=stop)
    ending = follower.run()
    current = follower.current
    record = history.record_of(current) if current is not None else None
    return Followed(ending, lab, task_id, current, record, pinned=attempt is not None)
