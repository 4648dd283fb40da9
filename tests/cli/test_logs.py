"""Watching tasks as they run: output on the coordinator's disk as it is printed, `patas logs`."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable


from tests.cli.live_sweeps import gate, sweeps  # noqa: F401 (sweeps: a fixture)
from tests.running import ENV, patas

DEADLINE_S = 2.0  # how soon a printed line must show


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll `condition` until it holds; how long that took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"{what}: not within {timeout_s} s"
        time.sleep(0.02)
    return time.monotonic() - started


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def test_a_line_printed_by_a_running_task_is_in_its_attempt_file_within_two_seconds(tmp_path, sweeps):
    sweep = sweeps("--cmd", f"echo 'epoch 1'; {gate(tmp_path, 'go')}")
    folder = tmp_path / "pataslab/grid/0"
    wait_for(lambda: folder.exists() or sweep.poll() is not None, 30, "the task to start")  # made as it is sent
    assert sweep.poll() is None, sweep.communicate()
    wait_for(lambda: read(folder / "attempt-1.stdout") == b"epoch 1\n", DEADLINE_S, "the line on disk")
    assert sweep.poll() is None  # the task still runs: it was not the end of the attempt that wrote it
    (tmp_path / "go").touch()
    assert sweep.wait(60) == 0
    assert (tmp_path / "pataslab/grid/0/stdout").read_bytes() == b"epoch 1\n"


class Lines:
    """The lines a process prints, read by a thread so the test can wait for each with a deadline."""

    def __init__(self, stream) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self._lines.put(line) for line in stream], daemon=True).start()

    def next(self, timeout_s: float) -> str:
        try:
            return self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout_s} s") from None


def start_logs(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "patas", "logs", *args], cwd=tmp_path, env=ENV, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def started(tmp_path: Path, sweep: subprocess.Popen[str], task_id: int = 0) -> None:
    """Wait until the sweep has sent the task (its folder is made then)."""
    folder = tmp_path / "pataslab/grid" / str(task_id)
    wait_for(lambda: folder.exists() or sweep.poll() is not None, 30, "the task to start")
    assert sweep.poll() is None, sweep.communicate()


def test_logs_of_a_done_task_prints_exactly_its_stdout_or_stderr(tmp_path):
    command = "printf 'a  b\\n\\tc {i}'; printf 'oops {i}\\n' >&2"
    assert patas("explore", "--cmd", command, "--va", "i", "1", "3", "1", "-y", cwd=tmp_path).code == 0
    run = patas("logs", "grid", "1", cwd=tmp_path)
    assert (run.code, run.stdout, run.stderr) == (0, "a  b\n\tc 2", "")
    assert patas("logs", "grid", "1", "--stderr", cwd=tmp_path).stdout == "oops 2\n"
    followed = patas("logs", "grid", "0", "-f", cwd=tmp_path, timeout=30)  # done: nothing to wait for
    assert (followed.code, followed.stdout, followed.stderr) == (0, "a  b\n\tc 1", "")


def test_logs_f_shows_each_line_of_a_running_task_within_two_seconds_and_ends_with_it(tmp_path, sweeps):
    sweep = sweeps("--cmd", f"echo 'line 1'; {gate(tmp_path, 'go1')}; echo 'line 2'; {gate(tmp_path, 'go2')}")
    started(tmp_path, sweep)
    follow = start_logs(tmp_path, "grid", "0", "-f")
    lines = Lines(follow.stdout)
    assert lines.next(timeout_s=30) == "line 1\n"  # the start of patas logs itself may take a while
    (tmp_path / "go1").touch()
    assert lines.next(timeout_s=DEADLINE_S) == "line 2\n"
    assert follow.poll() is None  # the task still runs
    (tmp_path / "go2").touch()
    assert follow.wait(30) == 0
    assert follow.stderr.read() == ""
    assert sweep.wait(60) == 0


def test_logs_f_follows_a_task_from_a_failed_attempt_to_its_retry(tmp_path, sweeps):
    command = f"[ \"$PATAS_ATTEMPT\" = 2 ] || {{ echo first; {gate(tmp_path, 'go')}; exit 1; }}; echo second"
    sweep = sweeps("--cmd", command)
    started(tmp_path, sweep)
    follow = start_logs(tmp_path, "grid", "0", "-f")
    lines = Lines(follow.stdout)
    assert lines.next(timeout_s=30) == "first\n"
    (tmp_path / "go").touch()  # attempt 1 fails now, while it is followed
    assert lines.next(timeout_s=30) == "second\n"
    assert follow.wait(30) == 0
    assert follow.stderr.read() == "Attempt 1 failed (exit 1); following attempt 2.\n"
    assert sweep.wait(60) == 0
    assert patas("logs", "grid", "0", "--attempt", "1", cwd=tmp_path).stdout == "first\n"


def test_logs_f_stops_at_a_task_given_up_while_the_run_goes_on(tmp_path, sweeps):
    first = f"echo try $PATAS_ATTEMPT; [ $PATAS_ATTEMPT = 2 ] || {gate(tmp_path, 'g0')}; exit 1"
    command = f"if [ {{i}} = 1 ]; then {first}; fi; {gate(tmp_path, 'go')}; exit 1"
    sweep = sweeps("--cmd", command, "--va", "i", "1", "3", "1", "--max-tries", "2", "--halt", "never")
    started(tmp_path, sweep)
    follow = start_logs(tmp_path, "grid", "0", "-f")
    lines = Lines(follow.stdout)
    assert lines.next(timeout_s=30) == "try 1\n"
    (tmp_path / "g0").touch()
    assert lines.next(timeout_s=30) == "try 2\n"
    assert follow.wait(30) == 3
    assert follow.stderr.read().splitlines() == [
        "Attempt 1 failed (exit 1); following attempt 2.",
        "Task 0 of pataslab/grid was given up: attempt 2 failed (exit 1).",
    ]
    assert sweep.poll() is None  # the other tasks still run: the journal said it, not the run's end


def test_logs_f_without_a_run_prints_what_there_is_and_says_the_task_is_not_done(tmp_path):
    assert patas("explore", "--cmd", "echo 'try '$PATAS_ATTEMPT; exit 1", "--max-tries", "2", "-y", cwd=tmp_path).code == 3
    run = patas("logs", "grid", "0", "-f", cwd=tmp_path, timeout=30)
    assert (run.code, run.stdout) == (3, "try 2\n")
    assert run.stderr == (
        "No run is in progress in pataslab/grid, and task 0 is not done (attempt 2 failed (exit 1));"
        " run the same patas explore again to finish it.\n"
    )


def test_logs_f_waits_for_a_task_that_has_not_started_yet(tmp_path, sweeps):
    sweep = sweeps("--cmd", f"{gate(tmp_path, 'go')}; echo 'task {{i}}'", "--va", "i", "0", "3", "1", "-j", "1")
    started(tmp_path, sweep)  # task 0 runs, task 1 waits on the agent, task 2 in the coordinator's queue
    early = patas("logs", "grid", "2", cwd=tmp_path)
    assert (early.code, early.stderr) == (1, "Error: task 2 of pataslab/grid has not started yet (add -f to wait for its output)\n")
    follow = start_logs(tmp_path, "grid", "2", "-f")
    lines = Lines(follow.stdout)
    (tmp_path / "go").touch()
    assert lines.next(timeout_s=30) == "task 2\n"
    assert follow.wait(30) == 0
    assert sweep.wait(60) == 0
    # The sweep is over: a task it never had is refused at once.
    assert patas("logs", "grid", "7", "-f", cwd=tmp_path).stderr == "Error: pataslab/grid has no task 7 (its task ids: 0 to 2)\n"


def test_logs_of_a_task_that_has_printed_nothing_yet_says_so(tmp_path, sweeps):
    # Task 0 runs but is silent; task 1 waits on the agent, its folder made: both have no output,
    # which must not read as a task whose output is empty.
    sweep = sweeps("--cmd", f"{gate(tmp_path, 'go')}; echo 'task {{i}}'", "--va", "i", "0", "2", "1", "-j", "1")
    started(tmp_path, sweep, 1)
    for task_id in ("0", "1"):
        run = patas("logs", "grid", task_id, cwd=tmp_path)
        assert (run.code, run.stdout) == (0, "")
        assert run.stderr == f"Task {task_id} of pataslab/grid has printed nothing to stdout yet (add -f to wait for its output).\n"
    (tmp_path / "go").touch()
    assert sweep.wait(60) == 0
    done = patas("logs", "grid", "1", "--stderr", cwd=tmp_path)
    assert (done.code, done.stdout, done.stderr) == (0, "", "")  # done, and its stderr is empty


def test_logs_attempt_n_follows_that_attempt_only(tmp_path):
    command = '[ "$PATAS_ATTEMPT" -ge 3 ] || { echo "failed $PATAS_ATTEMPT"; exit 1; }; echo ok'
    assert patas("explore", "--cmd", command, "-y", cwd=tmp_path).code == 0
    assert patas("logs", "grid", "0", cwd=tmp_path).stdout == "ok\n"
    second = patas("logs", "grid", "0", "-f", "--attempt", "2", cwd=tmp_path, timeout=30)
    assert (second.code, second.stdout, second.stderr) == (3, "failed 2\n", "Attempt 2 of task 0 failed (exit 1).\n")
    third = patas("logs", "grid", "0", "-f", "--attempt", "3", cwd=tmp_path, timeout=30)
    assert (third.code, third.stdout, third.stderr) == (0, "ok\n", "")
