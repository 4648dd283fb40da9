"""The pataslab under real runs: one run per lab, commits that replace every stream, torn journal
lines of any length, and a lab that records exactly what the user last asked for."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.running import journal, patas, start_patas


def md5_of_every_file(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (hashlib.md5(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def parsed_rows(folder: Path) -> list[dict[str, str]]:
    run = patas("parse", "-e", "pataslab/grid", "-p", "v", r"out (@int@)", cwd=folder)
    assert run.code == 0, run.stderr
    with open(folder / "pataslab/grid/grid.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def test_two_runs_of_one_lab_started_together_one_is_refused_and_each_task_is_committed_once(tmp_path):
    # Each task prints its shell's pid on several lines, with pauses: output from two runs mixes.
    command = "for n in 1 2 3 4 5; do echo $$ {i}; sleep 0.02; done"
    args = ("explore", "--cmd", command, "--va", "i", "0", "30", "1", "-y")
    first, second = start_patas(*args, cwd=tmp_path), start_patas(*args, cwd=tmp_path)
    results = [(p.wait(120), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    refused = next(stderr for code, _, stderr in results if code == 1)
    holder = next(p.pid for p, (code, _, _) in zip((first, second), results) if code == 0)
    assert refused.startswith(f"Error: pataslab/grid is in use by another patas explore (pid {holder} on host ")
    assert refused.count("\n") == 1 and "Traceback" not in refused
    lab = tmp_path / "pataslab/grid"
    done = [r["task_id"] for r in journal(lab) if r["outcome"] == "done"]
    assert sorted(done) == list(range(30))
    for task_id in range(30):
        lines = (lab / str(task_id) / "stdout").read_text().splitlines()
        assert len(lines) == 5 and len(set(lines)) == 1, (task_id, lines)
    assert not (lab / ".lock").exists()


def test_a_run_started_while_another_writes_is_refused_and_changes_nothing(tmp_path):
    # The first run's tasks wait for a gate file, so it is surely still writing when the second
    # starts, however slow the machine.
    command = "until [ -e gate ]; do sleep 0.02; done; echo $$ {i}"
    first = start_patas("explore", "--cmd", command, "--va", "i", "0", "40", "1", "-y", cwd=tmp_path)
    lab = tmp_path / "pataslab/grid"
    deadline = time.monotonic() + 60
    while not (lab / "0").is_dir():  # its first task was handed out: the run has started
        assert time.monotonic() < deadline and first.poll() is None, "the first run did not start"
        time.sleep(0.02)
    second = patas("explore", "--cmd", command, "--va", "i", "1", "41", "1", "-y", cwd=tmp_path)
    assert second.code == 1 and second.stderr.startswith(f"Error: pataslab/grid is in use by another patas explore (pid {first.pid} ")
    (tmp_path / "gate").touch()
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert sorted(r["task_id"] for r in journal(lab) if r["outcome"] == "done") == list(range(40))
    assert yaml.safe_load((lab / "experiment.yaml").read_text())["vars"][0]["max"] == "40"  # the first run's definition stands


def test_redo_replaces_every_stream_even_one_the_new_attempt_did_not_write(tmp_path):
    args = ("explore", "--cmd", 'test "$PATAS_ATTEMPT" = 1 && echo warning >&2; echo out $PATAS_ATTEMPT', "--vl", "x", "a", "-y")
    assert patas(*args, cwd=tmp_path).code == 0
    task = tmp_path / "pataslab/grid/0"
    assert (task / "stderr").read_text() == "warning\n"
    assert patas(*args, "--redo", cwd=tmp_path).code == 0
    assert (task / "stdout").read_text() == "out 2\n"
    assert not (task / "stderr").exists()


def test_a_torn_journal_line_longer_than_64_KiB_is_cut_whole(tmp_path):
    assert patas("explore", "--cmd", "echo out {x}", "--vl", "x", "1", "2", "-y", cwd=tmp_path).code == 0
    path = tmp_path / "pataslab/grid/journal.jsonl"
    whole = path.read_bytes()
    with open(path, "ab") as stream:
        stream.write(b'{"task_id": 9, "key": "' + b"a" * 100_000)  # the coordinator died mid-append
    run = patas("explore", "--cmd", "echo out {x}", "--vl", "x", "1", "2", "3", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert path.read_bytes().startswith(whole)
    assert sorted(json.loads(line)["values"]["x"] for line in path.read_text().splitlines()) == ["1", "2", "3"]
    assert sorted(row["out_v"] for row in parsed_rows(tmp_path)) == ["1", "2", "3"]


def test_narrowing_the_grid_to_nothing_new_is_recorded_so_parse_leaves_out_the_rest(tmp_path):
    assert patas("explore", "--cmd", "echo out {x}", "--vl", "x", "1", "2", "3", "4", "-y", cwd=tmp_path).code == 0
    narrowed = patas("explore", "--cmd", "echo out {x}", "--vl", "x", "1", "2", "-y", cwd=tmp_path)
    assert narrowed.code == 0 and "Nothing to run" in narrowed.stderr
    assert sorted(row["out_v"] for row in parsed_rows(tmp_path)) == ["1", "2"]


def test_a_run_that_cannot_bind_leaves_the_lab_byte_identical(tmp_path):
    assert patas("explore", "--cmd", "echo out {x}", "--vl", "x", "1", "2", "-y", cwd=tmp_path).code == 0
    before = md5_of_every_file(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = patas("explore", "--cmd", "echo out {x}", "--vl", "x", "1", "2", "3", "--bind", f"127.0.0.1:{port}", "-y", cwd=tmp_path)
    assert run.code == 1
    assert run.stderr.splitlines()[-1].startswith(f"Error: cannot listen on tcp://127.0.0.1:{port}")
    assert "Traceback" not in run.stderr
    assert md5_of_every_file(tmp_path) == before
    assert sorted(p.name for p in (tmp_path / "pataslab/grid").iterdir()) == [".plan-index", "0", "1", "experiment.yaml", "journal.jsonl"]


def test_combination_ids_in_the_table_follow_the_current_definition(tmp_path):
    assert patas("explore", "--cmd", "echo out {x}", "--vl", "x", "1", "2", "--repeat", "2", "-y", cwd=tmp_path).code == 0
    # A value added in front renumbers every combination: x=1 was combination 0, now it is 1.
    assert patas("explore", "--cmd", "echo out {x}", "--vl", "x", "0", "1", "2", "--repeat", "2", "-y", cwd=tmp_path).code == 0
    rows = parsed_rows(tmp_path)
    assert sorted((r["in_x"], r["combination_id"], r["repeat_id"]) for r in rows) == [
        ("0", "0", "0"), ("0", "0", "1"), ("1", "1", "0"), ("1", "1", "1"), ("2", "2", "0"), ("2", "2", "1"),
    ]  # fmt: skip


def test_a_folder_named_with_a_non_ascii_digit_is_not_a_task(tmp_path):
    assert patas("explore", "--cmd", "echo out {x}", "--vl", "x", "1", "-y", cwd=tmp_path).code == 0
    (tmp_path / "pataslab/grid/²").mkdir()
    again = patas("explore", "--cmd", "echo out {x}", "--vl", "x", "1", "2", "-y", cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert sorted(row["out_v"] for row in parsed_rows(tmp_path)) == ["1", "2"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_disk_full_at_the_start_is_one_line_and_leaves_no_temporary_file(tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], check=True)
    try:
        filler = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(filler, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(filler)
        run = patas("explore", "--cmd", "echo {x}", "--vl", "x", "1", "-o", str(disk / "lab"), "-y", cwd=tmp_path)
        assert run.code == 1
        assert run.stderr.splitlines()[-1].startswith("Error: ") and "No space left on device" in run.stderr
        assert "Traceback" not in run.stderr
        leftovers = [p for p in disk.rglob("*") if p.is_file() and p.name != "filler"]
        assert [p.name for p in leftovers if p.name.endswith(".tmp") or p.stat().st_size] == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_rerun_after_narrowing_counts_only_the_tasks_the_grid_still_has(tmp_path):
    """Narrowed, recorded, then run again unchanged: the older grid's done tasks are not counted."""
    sweep = ("explore", "--cmd", "echo {x}", "-y")
    assert patas(*sweep, "--vl", "x", "1", "2", cwd=tmp_path).code == 0
    assert patas(*sweep, "--vl", "x", "1", cwd=tmp_path).code == 0
    again = patas(*sweep, "--vl", "x", "1", cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert "1 task (1 done, 0 to run)" in again.stderr, again.stderr


def test_a_file_where_a_task_s_folder_goes_is_named_with_the_fix(tmp_path):
    (tmp_path / "pataslab/grid").mkdir(parents=True)
    (tmp_path / "pataslab/grid/0").write_text("mine\n")
    run = patas("explore", "--cmd", "echo {x}", "--vl", "x", "1", "-y", "-q", cwd=tmp_path)
    assert (run.code, run.stderr) == (
        1, "Error: pataslab/grid/0/attempt-1.stdout: Not a directory (a file is in the way of a folder on that path: move it away)\n",
    )
    assert (tmp_path / "pataslab/grid/0").read_text() == "mine\n"
    assert not [r for r in journal(tmp_path / "pataslab/grid")]
