"""The output store against a real pataslab folder: a running attempt's output reaches its file."""

from __future__ import annotations

import json
import time

import pytest

from patas.broker.run.outputs import OUTPUT_FLUSH_INTERVAL_S, OutputStore
from patas.common.config import experiment_from_flags
from patas.common.errors import LabError
from patas.common.lab import AttemptRecord, ExperimentLab
from patas.common.variables import list_variable
from tests.journal_record import RECORD


def store_in(tmp_path) -> tuple[OutputStore, ExperimentLab]:
    experiment = experiment_from_flags("grid", ["run {a}"], [list_variable("a", ["1"], "t")], 1, 3, ".", None)
    lab = ExperimentLab(tmp_path, "grid")
    return OutputStore([lab], [experiment.to_record()], sync=False), lab


def turns_until(condition, timeout_s: float, store: OutputStore) -> float:
    """Run loop turns (as the coordinator does, about every 100 ms) until `condition()`; the time it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s} s"
        store.end_turn()
        time.sleep(0.01)  # a loop turn's poll
    return time.monotonic() - started


def test_a_few_bytes_of_a_running_attempt_reach_its_file_within_the_flush_interval(tmp_path):
    store, lab = store_in(tmp_path)
    store.open(lease_id=1, experiment_id=0, task_id=0, attempt=1)
    path = lab.attempt_path(0, 1, "stdout")
    store.write(1, 0, b"epoch 1\n")
    store.end_turn()  # the first turn with data flushes at once: nothing was flushed lately
    assert path.read_bytes() == b"epoch 1\n"

    store.write(1, 0, b"epoch 2\n")
    store.write(1, 1, b"warning\n")
    waited = turns_until(lambda: path.read_bytes() == b"epoch 1\nepoch 2\n", 2.0, store)
    assert waited <= OUTPUT_FLUSH_INTERVAL_S + 0.2
    assert lab.attempt_path(0, 1, "stderr").read_bytes() == b"warning\n"
    store.close_all()


def test_files_are_flushed_at_most_once_per_interval_not_per_chunk(tmp_path):
    store, lab = store_in(tmp_path)
    store.open(1, 0, 0, 1)
    store.write(1, 0, b"a\n")
    store.end_turn()
    store.write(1, 0, b"b\n")
    store.end_turn()  # a turn later: not due yet
    assert lab.attempt_path(0, 1, "stdout").read_bytes() == b"a\n"
    store.close_all()


def test_an_attempt_closed_between_flushes_is_left_to_the_committer(tmp_path):
    store, lab = store_in(tmp_path)
    store.open(1, 0, 0, 1)
    store.open(2, 0, 1, 1)
    store.write(1, 0, b"a\n")
    store.end_turn()
    store.write(1, 0, b"b\n")
    store.write(2, 0, b"c\n")
    store.abandon(1)  # closed (and flushed) here: the next flush must not touch it
    turns_until(lambda: lab.attempt_path(1, 1, "stdout").read_bytes() == b"c\n", 2.0, store)
    assert lab.attempt_path(0, 1, "stdout").read_bytes() == b"a\nb\n"
    store.close_all()


def test_a_definition_that_cannot_be_written_fails_the_run_before_any_attempt_counts(tmp_path):
    # The definitions are written on the committer's thread while the first tasks run; an error
    # there must still come before any record, and reach the run loop.
    lab = ExperimentLab(tmp_path, "grid")
    (lab.path / ".experiment.yaml.tmp").mkdir(parents=True)  # where write_atomically writes first
    experiment = experiment_from_flags("grid", ["run {a}"], [list_variable("a", ["1"], "t")], 1, 3, ".", None)
    store = OutputStore([lab], [experiment.to_record()], sync=True)
    store.open(lease_id=1, experiment_id=0, task_id=0, attempt=1)
    store.write(1, 0, b"out\n")
    store.close(1, AttemptRecord.from_json(json.dumps(RECORD)), commit=True)
    with pytest.raises(LabError, match=r"grid/\.experiment\.yaml\.tmp: Is a directory"):  # the file in the way
        try:
            store.end_turn()  # raises if the committer's thread has failed already
        finally:
            store.close_all()  # else this does; either way the thread ends
    assert not lab.definition_path.exists()
    assert not lab.journal_path.exists() or lab.read_journal() == []
    assert not (lab.task_dir(0) / "stdout").exists()
