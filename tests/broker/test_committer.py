"""Group commit against real files: batches that wait while the disk is busy are committed as one
group, and no record reaches the journal before every output it vouches for is fdatasynced."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from patas.broker.run import committer as committer_module
from patas.broker.run.outputs import OutputStore
from patas.common.config import experiment_from_flags
from patas.common.errors import LabError
from patas.common.lab import AttemptRecord, ExperimentLab, Outcome
from patas.common.variables import list_variable
from tests.journal_record import RECORD

TASKS = 40


def store_in(tmp_path, sync: bool = True) -> tuple[OutputStore, ExperimentLab]:
    experiment = experiment_from_flags("grid", ["run {a}"], [list_variable("a", ["1"], "t")], 1, 3, ".", None)
    lab = ExperimentLab(tmp_path, "grid")
    return OutputStore([lab], [experiment.to_record()], sync=sync), lab


def record(task_id: int) -> AttemptRecord:
    fields = {**RECORD, "task_id": task_id, "key": f"k{task_id}", "combination_id": task_id, "outcome": Outcome.DONE}
    return AttemptRecord(**fields)


class DiskWatch:
    """Wraps fdatasync and the journal's writes: which inodes were durable when each record
    was written, and how many groups the committer made. The first fdatasync waits for `release`,
    as a busy disk would, so that batches pile up meanwhile."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced: set[int] = set()
        self.written: list[tuple[int, set[int]]] = []  # (task id, inodes durable by then)
        self.groups: list[int] = []
        self.busy = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        real_sync, real_write, real_commit = os.fdatasync, committer_module._write_all, committer_module.Committer._commit

        def fdatasync(fd: int) -> None:
            self.busy.set()
            assert self.release.wait(10)
            real_sync(fd)
            with self._lock:
                self.synced.add(os.fstat(fd).st_ino)

        def write_all(fd: int, data: bytes) -> None:
            with self._lock:
                durable = set(self.synced)
            for line in data.decode().splitlines():
                self.written.append((json.loads(line)["task_id"], durable))
            real_write(fd, data)

        def commit(committer: committer_module.Committer, batch: list) -> None:
            self.groups.append(len(batch))
            real_commit(committer, batch)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(committer_module, "_write_all", write_all)
        monkeypatch.setattr(committer_module.Committer, "_commit", commit)


def finish(store: OutputStore, task_id: int) -> None:
    """One attempt of task `task_id` printed its id and succeeded, in a loop turn of its own."""
    store.open(task_id, 0, task_id, 1)
    store.write(task_id, 0, f"{task_id}\n".encode())
    store.close(task_id, record(task_id), commit=True)
    store.end_turn()


def test_batches_waiting_for_a_busy_disk_are_committed_as_one_group(tmp_path, monkeypatch):
    watch = DiskWatch(monkeypatch)
    store, lab = store_in(tmp_path)
    finish(store, 0)
    assert watch.busy.wait(10)  # the thread is in its first fdatasync: the disk is "busy"
    for task_id in range(1, TASKS):
        finish(store, task_id)  # one loop turn each
    watch.release.set()
    store.close_all()
    assert watch.groups == [1, TASKS - 1]  # every turn that passed meanwhile, in one group
    assert [task_id for task_id, _ in watch.written] == list(range(TASKS))
    for task_id in range(TASKS):
        assert (lab.path / str(task_id) / "stdout").read_text() == f"{task_id}\n"


def test_no_record_is_written_before_the_output_it_vouches_for_is_durable(tmp_path, monkeypatch):
    watch = DiskWatch(monkeypatch)
    watch.release.set()
    store, lab = store_in(tmp_path)
    for task_id in range(TASKS):
        finish(store, task_id)
    store.close_all()
    assert sorted(task_id for task_id, _ in watch.written) == list(range(TASKS))
    for task_id, durable in watch.written:
        assert (lab.path / str(task_id) / "stdout").stat().st_ino in durable, task_id


def test_a_failed_fdatasync_journals_none_of_its_group(tmp_path, monkeypatch):
    store, lab = store_in(tmp_path)
    real_sync = os.fdatasync
    busy, gate = threading.Event(), threading.Event()

    def failing(fd: int) -> None:
        busy.set()
        assert gate.wait(10)
        if os.readlink(f"/proc/self/fd/{fd}").endswith("/13/attempt-1.stdout"):
            raise OSError(5, "Input/output error")
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", failing)
    finish(store, 10)
    assert busy.wait(10)
    for task_id in range(11, TASKS):
        finish(store, task_id)  # one group, with task 13 in it
    gate.set()
    with pytest.raises(LabError, match="13/attempt-1.stdout: Input/output error"):
        store.close_all()
    journaled = [json.loads(line)["task_id"] for line in lab.journal_path.read_text().splitlines()]
    assert journaled == [10]  # the first group's; none of the group whose fdatasync failed
    assert (lab.path / "10" / "stdout").read_text() == "10\n"
    assert not (lab.path / "14" / "stdout").exists()  # nothing of that group was put in place


def test_folders_are_made_ahead_and_every_attempt_writes_into_its_own(tmp_path):
    store, lab = store_in(tmp_path, sync=False)
    for task_id in range(TASKS):
        store.open(task_id, 0, task_id, 1)
    store.end_turn()
    deadline = time.monotonic() + 10
    while not all((lab.path / str(t)).is_dir() for t in range(TASKS)):  # before any output came
        assert time.monotonic() < deadline, "the folders were not made ahead"
        time.sleep(0.01)
    for task_id in range(TASKS // 2, TASKS):
        store.open(TASKS + task_id, 0, TASKS + task_id, 1)  # no turn ends: made at the first write
    for task_id in range(TASKS):
        store.write(task_id, 0, f"{task_id}\n".encode())
        store.close(task_id, record(task_id), commit=True)
    for task_id in range(TASKS + TASKS // 2, 2 * TASKS):
        store.write(task_id, 0, f"{task_id}\n".encode())
        store.close(task_id, record(task_id), commit=True)
    store.close_all()
    for task_id in [*range(TASKS), *range(TASKS + TASKS // 2, 2 * TASKS)]:
        assert (lab.path / str(task_id) / "stdout").read_text() == f"{task_id}\n"


def test_a_folder_that_cannot_be_made_is_a_lab_error_at_the_first_write(tmp_path):
    store, lab = store_in(tmp_path, sync=False)
    (lab.path / "7").write_text("a file where the task's folder goes")
    store.open(1, 0, 7, 1)
    with pytest.raises(LabError, match="grid/7"):
        store.write(1, 0, b"x\n")
    store.close_all()


def test_a_lab_error_names_the_file_the_failed_call_was_about(tmp_path):
    """`guard` is given the file a step is for; the error names the file that failed: a
    temporary file in the way, or both sides of a rename (either may be at fault)."""
    in_the_way = tmp_path / ".stdout.tmp"
    in_the_way.mkdir()
    with pytest.raises(LabError) as opening:
        committer_module.guard(lambda: open(in_the_way, "wb"), tmp_path / "stdout")
    assert str(opening.value) == f"{in_the_way}: Is a directory"
    (tmp_path / "attempt-1.stdout").write_bytes(b"x")
    (tmp_path / "stdout").mkdir()
    (tmp_path / "stdout" / "kept").write_bytes(b"")
    with pytest.raises(LabError) as renaming:
        committer_module.guard(lambda: os.rename(tmp_path / "attempt-1.stdout", tmp_path / "stdout"), tmp_path / "stdout")
    assert str(renaming.value).startswith(f"{tmp_path / 'attempt-1.stdout'} → {tmp_path / 'stdout'}: ")
    never_open = 1 << 20  # past any descriptor table
    with pytest.raises(LabError) as syncing:  # no file in the error: the step's own
        committer_module.guard(lambda: os.fsync(never_open), tmp_path / "journal.jsonl")
    assert str(syncing.value) == f"{tmp_path / 'journal.jsonl'}: Bad file descriptor"
