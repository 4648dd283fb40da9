"""The pataslab layout on real files: journal records read strictly, torn lines of any length,
task folders, atomic writes, and the experiment folder's lock."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patas.common import lab as lab_module
from patas.common import lab_lock
from patas.common.errors import LabError
from patas.common.lab import AttemptRecord, ExperimentLab, NewerJournalError, Outcome, PlanRecord, RecordError, write_atomically
from tests.journal_record import RECORD
from tests.running import REPO



def line(**changes: object) -> str:
    return json.dumps({**RECORD, **changes}) + "\n"


def test_a_record_of_an_old_journal_without_a_version_still_reads():
    record = AttemptRecord.from_json(line())
    assert (record.outcome, record.format, record.stderr_bytes) == (Outcome.DONE, 1, 0)
    assert AttemptRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"attempt": "1"}, "'attempt' must be an integer, got \"1\""),
        ({"attempt": True}, "'attempt' must be an integer, got true"),
        ({"values": ["1"]}, "'values' must be an object"),
        ({"values": {"x": 1}}, "'values' must map each variable to a string"),
        ({"outcome": "finished"}, 'unknown outcome "finished"'),
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"started_at": None}, "'started_at' must be an integer or a number"),
    ],
)
def test_a_record_with_a_wrong_field_is_refused_with_what_is_wrong(changes, message):
    with pytest.raises(RecordError, match=message.replace("(", r"\(")):
        AttemptRecord.from_json(line(**changes))


def test_a_record_missing_a_field_or_not_an_object_is_refused():
    data = dict(RECORD)
    del data["key"]
    with pytest.raises(RecordError, match="no field 'key'"):
        AttemptRecord.from_json(json.dumps(data))
    with pytest.raises(RecordError, match="not a JSON object"):
        AttemptRecord.from_json("[1, 2]")


def test_a_record_from_a_newer_patas_says_to_upgrade(tmp_path):
    with pytest.raises(NewerJournalError, match="written by patas 9.0 .journal format 99.; upgrade patas"):
        AttemptRecord.from_json(line(format=99, patas="9.0", novelty=[1]))
    lab = ExperimentLab(tmp_path, "grid")
    lab.path.mkdir()
    lab.journal_path.write_text(line() + line(format=99, patas="9.0"))
    with pytest.raises(LabError, match=r"journal.jsonl:2: written by patas 9.0"):
        list(lab.read_journal())


def test_a_bad_journal_line_is_named_by_file_and_line(tmp_path):
    lab = ExperimentLab(tmp_path, "grid")
    lab.path.mkdir()
    lab.journal_path.write_bytes(line().encode() + b"\xff\xfe not json\n")
    with pytest.raises(LabError, match=r"journal.jsonl:2: unreadable journal line \(not JSON"):
        list(lab.read_journal())


# A line as this version writes it (key order of to_json, no "extra"): the plan reader's fast path.
WRITTEN = AttemptRecord.from_json(line(key="adcbd4924ecccf557d48c984", values={"a": "0", "b": "é"}, format=2, patas="3.0")).to_json().encode() + b"\n"


# The plan reader's pattern, compiled now, as a process does once it has read its first lines:
# the tests below compare it with the strict reader.
lab_module._compile_written_line()


def read_outcome(read, data: bytes) -> tuple[object, ...]:
    """What a reader makes of a line: the planning fields, or the kind and text of its refusal."""
    try:
        record = read(data)
    except RecordError as error:
        return (type(error), str(error))
    return (record.task_id, record.key, record.attempt, record.outcome, record.repeat_id, record.values)


@settings(max_examples=500, deadline=None)
@given(at=st.integers(0, len(WRITTEN) - 1), cut=st.integers(0, 12), insert=st.binary(max_size=8))
def test_the_plan_reader_accepts_and_refuses_exactly_what_the_strict_reader_does(at, cut, insert):
    damaged = WRITTEN[:at] + insert + WRITTEN[at + cut :]
    assert read_outcome(PlanRecord.from_json, damaged) == read_outcome(AttemptRecord.from_json, damaged)


@pytest.mark.parametrize(
    "data",
    [
        WRITTEN,
        WRITTEN.replace(b'"task_id":0', b'"task_id":' + b"9" * 5000),  # more digits than int() reads
        WRITTEN.replace(b'"started_at":1', b'"started_at":' + b"1" * 5000),
        WRITTEN.replace(b'"exit_code":0', b'"exit_code":null'),
        WRITTEN.replace(b'"format":2', b'"format":3'),
        WRITTEN.replace(b'"hostname":"localhost"', b'"hostname":"a\\u00e9\\n"'),
        WRITTEN.replace(b'"key":"', b'"key":"\\u0041'),  # an escaped key: decoded, not taken as written
        WRITTEN.replace(b'"attempt":1', b'"attempt":0'),
        WRITTEN.replace(b'"work_dir":"/tmp"', b'"work_dir":"\xff"'),
        WRITTEN.replace(b'"values":{', b'"values":{"a":"dup",'),  # a repeated name: the last one wins
        b"\xef\xbb\xbf" + WRITTEN,  # a UTF-8 byte order mark, which json.loads accepts
    ],
)
def test_the_plan_reader_agrees_with_the_strict_reader_on_edge_cases(data):
    assert read_outcome(PlanRecord.from_json, data) == read_outcome(AttemptRecord.from_json, data)


def test_a_process_reads_its_first_lines_strictly_then_compiles_the_pattern(monkeypatch):
    monkeypatch.setattr(lab_module, "_WRITTEN_LINE", None)
    monkeypatch.setattr(lab_module, "_LINES_BEFORE_PATTERN", 2)
    lines = [WRITTEN, WRITTEN.replace(b'"task_id":0', b'"task_id":7'), WRITTEN.replace(b'"attempt":1', b'"attempt":3')]
    read = []
    for data in lines:
        read.append(read_outcome(PlanRecord.from_json, data))
        assert (lab_module._WRITTEN_LINE is None) == (len(read) < 3)
    assert read == [read_outcome(AttemptRecord.from_json, data) for data in lines]


def test_the_plan_reader_names_a_bad_line_by_file_and_line(tmp_path):
    lab = ExperimentLab(tmp_path, "grid")
    lab.path.mkdir()
    lab.journal_path.write_bytes(WRITTEN + WRITTEN.replace(b'"outcome":"done"', b'"outcome":"finished"'))
    with pytest.raises(LabError, match=r"journal.jsonl:2: unreadable journal line \(unknown outcome"):
        list(lab.read_plan_journal())


@settings(max_examples=40, deadline=None)
@given(
    complete=st.lists(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"") + b"\n"), max_size=5),
    torn=st.one_of(st.integers(1, 300), st.integers(65_000, 200_000)),
)
def test_a_torn_last_line_of_any_length_is_cut_exactly(tmp_path_factory, complete, torn):
    lab = ExperimentLab(tmp_path_factory.mktemp("torn"), "grid")
    lab.path.mkdir()
    whole = b"".join(complete)
    lab.journal_path.write_bytes(whole + b"x" * torn)
    lab.drop_torn_journal_line()
    assert lab.journal_path.read_bytes() == whole


def test_a_journal_ending_in_a_newline_is_left_alone(tmp_path):
    lab = ExperimentLab(tmp_path, "grid")
    lab.path.mkdir()
    lab.journal_path.write_text(line() * 3)
    lab.drop_torn_journal_line()
    assert lab.journal_path.read_text() == line() * 3


def test_only_folders_named_as_task_ids_are_task_folders(tmp_path):
    lab = ExperimentLab(tmp_path, "grid")
    for name in ("0", "17", "²", "007", "-1", "x1", "١"):  # '²' and '١' are digits to str.isdigit
        (lab.path / name).mkdir(parents=True)
    (lab.path / "3").write_text("a file, not a folder")
    assert lab.task_folders() == {0, 17}


def test_a_failed_atomic_write_leaves_neither_the_file_nor_its_temporary(tmp_path, monkeypatch):
    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        write_atomically(tmp_path / "experiment.yaml", b"name: grid\n")
    assert list(tmp_path.iterdir()) == []


# --- the lock ---------------------------------------------------------------------------------


def test_a_second_lock_is_refused_naming_the_holder_and_the_lab_is_left_as_it_was(tmp_path):
    folder = tmp_path / "pataslab" / "grid"
    with lab_lock.acquire(folder):
        before = sorted(p.name for p in folder.iterdir())
        content = (folder / ".lock").read_bytes()
        with pytest.raises(lab_lock.LabInUseError, match=f"{folder} is in use by another patas explore .pid {os.getpid()} on host "):
            lab_lock.acquire(folder)
        assert sorted(p.name for p in folder.iterdir()) == before
        assert (folder / ".lock").read_bytes() == content
        holder = lab_lock.holder(folder)
        assert holder is not None and holder.pid == os.getpid()
    assert lab_lock.holder(folder) is None
    # Released before the run wrote anything: the folders it made to hold the lock are gone.
    assert list(tmp_path.iterdir()) == []


def test_a_released_lock_keeps_folders_the_run_wrote_into(tmp_path):
    folder = tmp_path / "grid"
    with lab_lock.acquire(folder):
        (folder / "experiment.yaml").write_text("name: grid\n")
    assert sorted(p.name for p in folder.iterdir()) == ["experiment.yaml"]
    lab_lock.acquire(folder).release()


def test_the_lock_of_a_killed_run_is_free(tmp_path):
    folder = tmp_path / "grid"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from patas.common import lab_lock; lab_lock.acquire(__import__('pathlib').Path({str(folder)!r})); print('held', flush=True); input()"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        found = lab_lock.holder(folder)
        assert found is not None and found.pid == holder.pid
        with pytest.raises(lab_lock.LabInUseError, match=f"pid {holder.pid}"):
            lab_lock.acquire(folder)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (folder / ".lock").exists()  # left behind by the killed run, but not held
    lab_lock.acquire(folder).release()


def test_a_lock_where_a_file_is_in_the_way_is_a_lab_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(LabError, match="afile/lab/grid: a file is in the way"):
        lab_lock.acquire(tmp_path / "afile" / "lab" / "grid")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
