"""`patas explore` fails fast and says what failed: the default early stop, --halt, the summary."""

from __future__ import annotations

import os
import re
import shutil
import time

from tests.cli.test_explore import README_EXPLORE
from tests.running import REPO, journal, patas, processes_with

DOC = (REPO / "docs" / "explore.md").read_text()


def test_a_typo_in_the_readme_command_stops_after_ten_tasks_and_says_why(tmp_path):
    shutil.copy2(REPO / "examples" / "basic_usage" / "main.py", tmp_path)
    typo = [word.replace("./main.py", "./mian.py") for word in README_EXPLORE]
    started = time.monotonic()
    run = patas(*typo, cwd=tmp_path)
    assert run.code == 3, run.stderr
    assert time.monotonic() - started < 60
    lab = tmp_path / "pataslab/grid"
    records = journal(lab)
    assert len(records) == 10 and {r["attempt"] for r in records} == {1}  # exit 127 is not retried
    assert len([p for p in lab.iterdir() if p.is_dir()]) <= 10 + 2 * 2 * os.cpu_count()  # + what was running
    # Two workers: which ten tasks end first may vary a little (all but task 10 on share a command).
    line = re.compile(
        r"Stopped: the first 10 tasks tried all failed; most common error: cannot run \(exit 127\), 10 times:"
        r" \S*bash: line 1: ./mian.py: No such file or directory; command: ./mian.py \d+ relu fast; exit status 3"
    )
    stopped = next(line for line in run.stderr.splitlines() if line.startswith("Stopped:"))
    assert line.fullmatch(stopped), stopped
    documented = next(line.strip() for line in DOC.splitlines() if line.strip().startswith("Stopped: the first 10"))
    assert line.fullmatch(documented), documented
    assert "2,990 tasks not run; run the same command again to run them." in run.stderr
    assert run.stderr.count("giving up") == 10 and "further failures" not in run.stderr
    assert re.search(r"Failed 10 tasks:\n  cannot run \(exit 127\): 10 tasks \(grid [\d, -]+\); see: cat pataslab/grid/\d+/attempt-1.stderr\n", run.stderr)


def test_halt_never_runs_every_task_and_the_summary_names_them(tmp_path):
    command = "echo 'bad {i}' >&2; exit $(( PATAS_VAR_i % 3 == 0 ? 2 : 1 ))"
    run = patas("explore", "--cmd", command, "--va", "i", "0", "30", "1", "--max-tries", "1", "--halt", "never", "-y", cwd=tmp_path)
    assert run.code == 3
    assert "30 failed" in run.stderr and "Stopped" not in run.stderr
    assert run.stderr.count("giving up") == 10 and "(further failures are counted, not shown)" in run.stderr
    summary = run.stderr[run.stderr.index("Failed 30 tasks:") :].splitlines()
    assert summary[1].startswith("  exit 1: 20 tasks (grid 1-2, 4-5, 7-8, 10-11, 13-14, 16-17 … (+8 more)); see: cat ")
    assert summary[2].startswith("  exit 2: 10 tasks (grid 0, 3, 6, 9, 12, 15, 18, 21, 24, 27); see: cat ")
    shown = summary[2].split("see: cat ")[1]
    task_id = int(shown.split("/")[2])
    assert task_id % 3 == 0 and (tmp_path / shown).read_text() == f"bad {task_id}\n"


def test_halt_now_fail_1_kills_what_runs(tmp_path):
    marker = "77.%d" % os.getpid()
    command = f"test {{i}} != 0 || exit 5; sleep {marker}"
    started = time.monotonic()
    run = patas("explore", "--cmd", command, "--va", "i", "0", "8", "1", "-j", "2", "--halt", "now,fail=1", "--max-tries", "1", "-y", cwd=tmp_path)
    assert time.monotonic() - started < 40
    assert run.code == 3, run.stderr
    assert "Stopped: --halt now,fail=1: 1 task failed; most common error: exit 5, 1 time; command: test 0 != 0 || exit 5;" in run.stderr
    assert processes_with(marker) == []
    assert [r["task_id"] for r in journal(tmp_path / "pataslab/grid")] == [0]


def test_halt_soon_lets_running_tasks_finish_and_starts_no_more(tmp_path):
    command = "test {i} != 0 || exit 5; sleep 1; echo ok {i}"
    run = patas("explore", "--cmd", command, "--va", "i", "0", "20", "1", "-j", "2", "--halt", "soon,fail=1", "--max-tries", "1", "-y", cwd=tmp_path)
    assert run.code == 3, run.stderr
    records = journal(tmp_path / "pataslab/grid")
    # Handed out before the stop: the 2 running and at most 1 queued per worker on the agent.
    assert records[0]["task_id"] == 0 and records[0]["outcome"] == "failed"
    assert 2 <= len(records) <= 4 and {r["outcome"] for r in records[1:]} == {"done"}
    assert f"Halted: {len(records) - 1} done, 1 failed" in run.stderr
    assert f"{20 - len(records)} tasks not run" in run.stderr


def test_halt_now_success_1_stops_at_the_first_success_and_exits_0(tmp_path):
    run = patas("explore", "--cmd", "test {i} = 3", "--va", "i", "0", "40", "1", "-j", "1", "--halt", "now,success=1", "--max-tries", "1", "-y", cwd=tmp_path)
    assert run.code == 3  # tasks 0-2 were given up before
    assert "Stopped: --halt now,success=1: 1 task done" in run.stderr
    assert patas("explore", "--cmd", "true {i}", "--va", "i", "0", "40", "1", "-j", "1", "--halt", "now,success=1", "-y", cwd=tmp_path).code == 0


def test_a_program_that_is_not_executable_is_not_retried(tmp_path):
    (tmp_path / "train.sh").write_text("#!/bin/sh\necho hi\n")  # no execute bit: exit 126
    run = patas("explore", "--cmd", "./train.sh {i}", "--vl", "i", "1", "2", "--max-tries", "3", "-y", cwd=tmp_path)
    assert run.code == 3
    assert [(r["attempt"], r["exit_code"]) for r in journal(tmp_path / "pataslab/grid")] == [(1, 126), (1, 126)]
    assert "cannot run (exit 126); giving up" in run.stderr and "will retry" not in run.stderr
