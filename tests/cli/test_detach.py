"""`patas explore --detach`, `patas attach`, `patas stop`: a sweep that outlives its terminal."""

from __future__ import annotations

import fcntl
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import pytest

from patas.common.lab_lock import holder
from tests.running import ENV, REPO, done_ids, journal, patas, processes_with, start_patas

TASKS = 8
# The first QUICK tasks end at once; the others wait for the test to create the file GO, so
# the test knows the run is in the middle of its sweep when it acts.
QUICK = 3
WAITING_CMD = f"if [ {{i}} -ge {QUICK} ]; then echo waiting >&2; while [ ! -e GO ]; do sleep 0.02; done; fi; echo task {{i}}"
SWEEP = ("explore", "--cmd", WAITING_CMD, "--va", "i", "0", str(TASKS), "1", "-j", "2", "-y")


@pytest.fixture(autouse=True)
def no_run_left_behind(tmp_path):  # type: ignore[no-untyped-def]
    """A failing test must not leave its detached sweep waiting for GO forever: whatever run
    still holds a lock under the test's folder is stopped as Ctrl-C would."""
    yield
    stop_runs_left_in(tmp_path)


def stop_runs_left_in(folder: Path) -> None:
    for lock in folder.rglob(".lock"):
        run = holder(lock.parent)
        if run is not None and run.pid is not None:
            os.kill(run.pid, signal.SIGTERM)
            wait_for(lambda: holder(lock.parent) is None, timeout_s=30)


def wait_for(condition, timeout_s: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def read_until(fd: int, marker: bytes, timeout_s: float = 120.0) -> bytes:
    """What a pty's master gives until `marker` appears in it."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; the terminal showed: {seen!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # EIO: every process of the terminal closed it
                break
    return seen


def in_a_terminal(command: str, cwd: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`bash -c COMMAND` as the leader of a new session whose controlling terminal is a new pty,
    as an SSH login would run it; the shell and the pty's master."""
    master, slave = os.openpty()

    def take_terminal() -> None:  # runs in the child, after setsid
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    shell = subprocess.Popen(
        ["bash", "-c", command], cwd=cwd, env=ENV, stdin=slave, stdout=slave, stderr=slave,
        start_new_session=True, preexec_fn=take_terminal,
    )  # fmt: skip
    os.close(slave)
    return shell, master


def patas_command(*args: str) -> str:
    return shlex.join([sys.executable, "-m", "patas", *args])


def attach_then_go(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`patas attach ARGS` once it follows the log, then let the waiting tasks end; its result."""
    attached = start_patas("attach", *args, cwd=cwd)
    assert attached.stdout is not None
    first = attached.stdout.readline()  # the log's header: it is attached
    (cwd / "GO").touch()
    stdout, stderr = attached.communicate(timeout=120)
    return subprocess.CompletedProcess(attached.args, attached.returncode, first + stdout, stderr)


def exactly_once(folder: Path) -> None:
    ids = [r["task_id"] for r in journal(folder) if r["outcome"] == "done"]
    assert sorted(ids) == list(range(TASKS)), ids
    for i in range(TASKS):
        assert (folder / str(i) / "stdout").read_text() == f"task {i}\n"


def test_a_detached_sweep_survives_its_terminal_closing_and_attach_follows_it_to_the_end(tmp_path):
    grid = tmp_path / "pataslab/grid"
    # The shell stays, reading its terminal, as a login shell would, until the terminal goes.
    shell, master = in_a_terminal(patas_command(*SWEEP, "--detach") + "; echo DETACH-EXIT=$?.; read line", tmp_path)
    shown = read_until(master, b".\r\n")
    assert b"Running in the background (pid " in shown and b"log: pataslab/grid/run.log" in shown, shown
    assert b"patas attach -o pataslab grid" in shown and b"patas stop -o pataslab grid" in shown, shown
    assert b"DETACH-EXIT=0." in shown
    run = holder(grid)
    assert run is not None, "the run should hold its experiment while its tasks wait"

    # The terminal closes: the kernel hangs up the session, as when an SSH connection drops.
    os.close(master)
    os.killpg(shell.pid, signal.SIGHUP)
    assert shell.wait(timeout=30) != 0  # the shell died of it
    wait_for(lambda: len(done_ids(grid)) >= QUICK)
    assert holder(grid) == run, "the run should go on after its terminal closed"

    attached = attach_then_go(tmp_path)
    assert attached.returncode == 0, attached.stderr
    assert f"Finished: {TASKS} done, 0 failed" in attached.stdout
    assert attached.stdout.rstrip().endswith("Run ended: exit status 0.")
    assert attached.stdout.startswith(f"patas explore --detach: pid {run.pid} on host ")
    assert holder(grid) is None
    exactly_once(grid)
    log = (grid / "run.log").read_text()
    assert f"Finished: {TASKS} done, 0 failed" in log and "Interrupted" not in log


def test_stop_ends_the_run_as_ctrl_c_and_a_rerun_does_exactly_the_rest(tmp_path):
    grid = tmp_path / "pataslab/grid"
    started = patas(*SWEEP, "--detach", cwd=tmp_path)
    assert started.code == 0, started.stderr
    assert len(started.stderr.strip().splitlines()) == 1, started.stderr
    wait_for(lambda: len(done_ids(grid)) >= QUICK and len(list(grid.glob("*/attempt-1.stderr"))) == 2)
    run = holder(grid)
    assert run is not None

    stopped = patas("stop", "grid", cwd=tmp_path)
    assert stopped.code == 0, stopped.stderr
    assert stopped.stderr.splitlines() == [
        f"Stopping the run in pataslab/grid (pid {run.pid})…",
        "Stopped. Run the same command again to run what is left.",
    ]
    assert holder(grid) is None
    tasks = [pid for pid in processes_with("[ ! -e GO ]", cwd=tmp_path) if pid != run.pid]  # it may still be exiting
    assert tasks == [], "its running tasks are killed before it lets go"
    assert done_ids(grid) == list(range(QUICK)), "only the tasks that had ended are counted"
    log = (grid / "run.log").read_text()
    assert f"Interrupted: {QUICK} done" in log and log.rstrip().endswith("Run ended: exit status 130.")

    (tmp_path / "GO").touch()
    again = patas(*SWEEP, cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert f"({QUICK} done, {TASKS - QUICK} to run)" in again.stderr
    exactly_once(grid)
    assert len([r for r in journal(grid) if r["outcome"] == "done"]) == TASKS  # none done twice

    # A second detached run keeps the first one's log beside its own.
    rerun = patas(*SWEEP, "--detach", "--redo", cwd=tmp_path)
    assert rerun.code == 0, rerun.stderr
    wait_for(lambda: holder(grid) is None)
    assert "Run ended: exit status 0." in (grid / "run.log").read_text()
    assert "Interrupted" in (grid / "run.log.1").read_text()
    assert "Interrupted" not in (grid / "run.log").read_text()


def test_detach_refuses_a_busy_experiment_in_the_foreground_and_leaves_its_log_alone(tmp_path):
    grid = tmp_path / "pataslab/grid"
    assert patas(*SWEEP, "--detach", cwd=tmp_path).code == 0
    wait_for(lambda: len(done_ids(grid)) >= QUICK)
    log = (grid / "run.log").read_bytes()

    second = patas(*SWEEP, "--detach", cwd=tmp_path)
    assert second.code == 1
    assert second.stderr.startswith("Error: pataslab/grid is in use by another patas explore (pid ")
    assert len(second.stderr.splitlines()) == 1, second.stderr
    assert not (grid / "run.log.1").exists()
    assert (grid / "run.log").read_bytes()[: len(log)] == log

    assert attach_then_go(tmp_path).returncode == 0
    exactly_once(grid)


def test_attach_to_a_run_not_started_with_detach_says_where_its_progress_is(tmp_path):
    grid = tmp_path / "pataslab/grid"
    foreground = subprocess.Popen(
        [sys.executable, "-m", "patas", *SWEEP], cwd=tmp_path, env=ENV, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: len(done_ids(grid)) >= QUICK)
        attached = patas("attach", "grid", cwd=tmp_path)
        assert attached.code == 1
        assert attached.stderr.startswith("Error: the run in pataslab/grid (pid ")
        assert attached.stderr.rstrip().endswith("was not started with --detach: its progress is on its own terminal")
        # stop works on any run of this user: the foreground one ends as with Ctrl-C.
        assert patas("stop", cwd=tmp_path).code == 0
        assert foreground.wait(timeout=30) == 130
    finally:
        if foreground.poll() is None:
            foreground.kill()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to act as another user")
def test_another_user_cannot_stop_the_run():
    # A folder every user can read (pytest's tmp_path is private to root).
    folder = Path(tempfile.mkdtemp(prefix="patas-stop-"))
    try:
        folder.chmod(0o755)
        grid = folder / "pataslab/grid"
        assert patas(*SWEEP, "--detach", cwd=folder).code == 0
        run = holder(grid)
        assert run is not None
        # The stranger runs what `patas stop` runs (with the system's Python: root's is out of its reach).
        script = "from pathlib import Path; from patas.broker.run.background import find_run, stop_run; stop_run(find_run(Path('pataslab'), None))"
        stranger = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script],
            cwd=folder, env={**ENV, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert stranger.returncode == 1
        assert stranger.stderr.rstrip().endswith(
            f"StopError: the run in pataslab/grid (pid {run.pid}) belongs to another user: only that user (or root) can stop it"
        ), stranger.stderr
        assert holder(grid) == run, "the run goes on"
        assert attach_then_go(folder).returncode == 0
        exactly_once(grid)
    finally:
        stop_runs_left_in(folder)
        shutil.rmtree(folder)
