import re
from pathlib import Path

import pytest

from patas.analysis import scan as scan_module
from patas.analysis.scan import ScanJob, read_text, scan, scan_text

LOSS = re.compile(r"loss (\d+)", re.MULTILINE)
ACC = re.compile(r"acc (\d+)", re.MULTILINE)
EPOCH = re.compile(r"^end of epoch", re.MULTILINE)


def test_last_match_wins_and_missing_is_none():
    assert scan_text("loss 1\nloss 2\nloss 3\n", [LOSS, ACC], []) == [("3", None)]


def test_breakers_cut_rows_after_the_matching_line_and_drop_the_tail():
    text = "loss 1\nacc 5\nend of epoch 1\nloss 2\nend of epoch 2\nloss 9\n"
    assert scan_text(text, [LOSS, ACC], [EPOCH]) == [("1", "5"), ("2", None)]


def test_two_breakers_on_one_line_make_one_row():
    text = "loss 1 end of epoch\nloss 2\n"
    assert scan_text(text, [LOSS], [re.compile("loss"), re.compile("epoch")]) == [("1",), ("2",)]


def test_read_text_joins_streams_and_treats_missing_files_as_empty(tmp_path: Path):
    (tmp_path / "stdout").write_text("loss 1")
    (tmp_path / "stderr").write_text("acc 2\n")
    assert read_text([tmp_path / "stdout", tmp_path / "stderr"]) == "loss 1\nacc 2\n"
    assert read_text([tmp_path / "nothing"]) == ""


def test_pool_scan_equals_in_process_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    jobs = []
    for task_id in range(40):
        path = tmp_path / f"{task_id}.out"
        path.write_text(f"loss {task_id}\nacc {task_id * 2}\n")
        jobs.append(ScanJob(task_id, (str(path),)))
    serial = scan(jobs, [LOSS, ACC], [], workers=1)
    monkeypatch.setattr(scan_module, "PARALLEL_MIN_TASKS", 10)
    assert scan(jobs, [LOSS, ACC], [], workers=2) == serial
    assert serial[39] == [("39", "78")]
