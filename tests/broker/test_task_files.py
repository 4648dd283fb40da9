"""Collected files on the coordinator (patas/broker/run/task_files.py) against a real pataslab:
what a node sends is checked before anything is created, and committed with the output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patas.broker.run.outputs import OutputStore
from patas.common import protocol
from patas.common.config import experiment_from_flags
from patas.common.lab import AttemptRecord, ExperimentLab, Outcome
from patas.common.protocol import TaskFile
from patas.common.variables import list_variable
from tests.journal_record import RECORD

LIMIT = 1 << 20


def store_in(tmp_path: Path) -> tuple[OutputStore, ExperimentLab]:
    experiment = experiment_from_flags("grid", ["run {a}"], [list_variable("a", ["1"], "t")], 1, 3, ".", None)
    lab = ExperimentLab(tmp_path, "grid")
    return OutputStore([lab], [experiment.to_record()], sync=True), lab


def record(attempt: int, outcome: Outcome = Outcome.DONE) -> AttemptRecord:
    return AttemptRecord.from_json(json.dumps({**RECORD, "attempt": attempt, "outcome": outcome.value}))


def send(store: OutputStore, lease: int, *chunks: tuple[bytes, int, bool, bytes]) -> None:
    """Deliver chunks as the coordinator does: each a TaskFile message, encoded and decoded."""
    for path, offset, eof, data in chunks:
        message = protocol.decode(protocol.encode(TaskFile(lease, path, offset, eof, data)))
        assert isinstance(message, TaskFile)
        store.write_file(lease, message.path, message.offset, message.eof, message.data)


def finish(store: OutputStore, lease: int, attempt: int, announced: int) -> str:
    error = store.files_error(lease, announced)
    store.close(lease, record(attempt, Outcome.FAILED if error else Outcome.DONE), commit=not error)
    store.end_turn()
    return error


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_successful_attempts_files_are_committed_with_its_output_and_replace_the_last(tmp_path):
    store, lab = store_in(tmp_path)
    store.open(1, 0, 0, 1, LIMIT)
    store.write(1, 0, b"out\n")
    send(store, 1, (b"model.bin", 0, False, b"ab"), (b"model.bin", 2, True, b"cd"), (b"metrics/a.csv", 0, True, b"x"))
    assert tree(lab.task_dir(0) / "attempt-1.files") == {"model.bin": b"abcd", "metrics/a.csv": b"x"}  # written as they come
    assert finish(store, 1, 1, 2) == ""
    store.close_all()  # committed: a group commit would take both attempts at once, with no `replacing`
    store, lab = store_in(tmp_path)
    store.open(2, 0, 0, 2, LIMIT)  # --redo: a second attempt replaces every file
    send(store, 2, (b"other", 0, True, b"y"))
    assert finish(store, 2, 2, 1) == ""
    store.close_all()
    assert tree(lab.task_dir(0) / "files") == {"other": b"y"}
    assert sorted(os.listdir(lab.task_dir(0))) == ["files", "stdout"]
    assert [r.outcome for r in lab.read_journal()] == [Outcome.DONE, Outcome.REPLACING, Outcome.DONE]


def test_a_committed_attempt_without_files_removes_the_tasks_old_ones(tmp_path):
    store, lab = store_in(tmp_path)
    store.open(1, 0, 0, 1, LIMIT)
    send(store, 1, (b"a", 0, True, b"1"))
    finish(store, 1, 1, 1)
    store.open(2, 0, 0, 2, 0)  # run again without --collect
    assert finish(store, 2, 2, 0) == ""
    store.close_all()
    assert sorted(os.listdir(lab.task_dir(0))) == ["stdout"]


def test_a_failed_or_interrupted_attempts_files_stay_under_it(tmp_path):
    store, lab = store_in(tmp_path)
    store.open(1, 0, 0, 1, LIMIT)
    send(store, 1, (b"model.bin", 0, True, b"failed"))
    store.close(1, record(1, Outcome.FAILED), commit=False)
    store.open(2, 0, 0, 2, LIMIT)
    send(store, 2, (b"model.bin", 0, False, b"half"))  # its agent died mid-file
    store.abandon(2)
    store.open(3, 0, 0, 3, LIMIT)
    send(store, 3, (b"model.bin", 0, True, b"whole"))
    assert finish(store, 3, 3, 1) == ""
    store.close_all()
    task = lab.task_dir(0)
    assert (task / "attempt-1.files/model.bin").read_bytes() == b"failed"
    assert (task / "attempt-2.files/model.bin").read_bytes() == b"half"
    assert tree(task / "files") == {"model.bin": b"whole"}
    assert lab.attempts_on_disk(0) == 2  # a later run numbers its attempts after these (3 is in the journal)


@pytest.mark.parametrize(
    "chunks, reason",
    [
        ([(b"../../escape", 0, True, b"x")], "its node sent a path with an empty, '.' or '..' component ('../../escape')"),
        ([(b"/tmp/escape", 0, True, b"x")], "its node sent an absolute path ('/tmp/escape')"),
        ([(b"a\0b", 0, True, b"x")], "its node sent a path holding a NUL byte ('a\\x00b')"),
        ([(b"a", 0, False, b"x"), (b"b", 0, True, b"y")], "its node sent a file ('b') before the end of the previous one ('a')"),
        ([(b"a", 5, True, b"x")], "its node sent a file ('a') that does not start at offset 0"),
        ([(b"a", 0, False, b"x"), (b"a", 7, True, b"y")], "its node sent a chunk of 'a' at offset 7 instead of 1"),
        ([(b"a", 0, True, b"x"), (b"a", 0, True, b"y")], "its node sent a file it cannot be stored as ('a': File exists)"),
        ([(b"a", 0, True, b"x"), (b"a/b", 0, True, b"y")], "its node sent a file it cannot be stored as ('a/b': File exists)"),
        ([(b"big", 0, False, b"x" * LIMIT), (b"big", LIMIT, True, b"x")], "its node sent more than its collect limit of 1.0 MiB"),
    ],
)
def test_a_crafted_message_fails_the_attempt_and_writes_nothing_outside(tmp_path, chunks, reason):
    store, lab = store_in(tmp_path)
    store.open(1, 0, 0, 1, LIMIT)
    send(store, 1, *chunks)
    assert finish(store, 1, 1, len(chunks)) == f"{reason}; none of its files are kept"
    store.close_all()
    assert not (lab.task_dir(0) / "files").exists()
    outside = {p.name for p in tmp_path.iterdir()} | {p.name for p in Path("/tmp").glob("escape")}
    assert outside == {"grid"}


def test_files_from_a_node_of_an_experiment_that_collects_none_are_refused(tmp_path):
    store, lab = store_in(tmp_path)
    store.open(1, 0, 0, 1)
    send(store, 1, (b"a", 0, True, b"x"))
    assert finish(store, 1, 1, 1) == "its node sent files though the experiment collects none; none of its files are kept"
    store.close_all()


def test_files_announced_but_missing_fail_the_attempt(tmp_path):
    store, _ = store_in(tmp_path)
    store.open(1, 0, 0, 1, LIMIT)
    assert finish(store, 1, 1, 2) == "its node announced 2 collected file(s) but none arrived"
    store.open(2, 0, 1, 1, LIMIT)
    send(store, 2, (b"a", 0, False, b"x"))
    assert finish(store, 2, 1, 1) == "its node announced 1 collected file(s) but 0 arrived whole"
    store.close_all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(min_size=0, max_size=12).map(lambda b: b.replace(b"\x01", b"/")), min_size=1, max_size=4))
def test_whatever_paths_a_node_sends_nothing_is_created_outside_the_attempts_folder(tmp_path_factory, paths):
    root = tmp_path_factory.mktemp("lab")
    store, lab = store_in(root)
    store.open(1, 0, 0, 1, LIMIT)
    send(store, 1, *[(b"../" * n + path, 0, True, b"x") for n, path in enumerate(paths)])
    store.files_error(1, len(paths))
    store.abandon(1)
    store.close_all()
    created = {str(p.relative_to(root)) for p in root.rglob("*")}
    assert created <= {"grid", "grid/experiment.yaml", "grid/journal.jsonl", "grid/0"} | {
        c for c in created if c.startswith("grid/0/attempt-1.files")
    }
