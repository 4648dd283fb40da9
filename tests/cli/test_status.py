"""`patas status`: asking a running sweep over its private channel, and reading the journal after."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from patas.broker.run.channel import CONTROL_DIR, SOCKET_NAME
from tests.cli.live_sweeps import START_TIMEOUT_S, gate, live, sweeps, wait_for  # noqa: F401 (fixture)
from tests.running import ENV, REPO, patas

EXPERIMENT_KEYS = {
    "name", "total", "done", "running", "pending", "failed", "given_up", "rate_per_s", "eta_s", "live",
    "running_tasks", "nodes", "failures",
}  # fmt: skip


def two_running(lab: Path):
    status = live(lab)
    if status is None or len(status.running_tasks) < 2 or not all(t.last_line for t in status.running_tasks):
        return None
    return status


def test_status_during_a_run_names_the_running_tasks(tmp_path, sweeps):
    sweep = sweeps("--cmd", f"echo 'step {{i}}'; {gate(tmp_path)}", "--va", "i", "0", "3", "1", "-j", "2")
    lab = tmp_path / "pataslab"
    wait_for(lambda: two_running(lab) or sweep.poll() is not None, START_TIMEOUT_S, "two tasks running")
    assert sweep.poll() is None, sweep.communicate()

    shown = patas("status", cwd=tmp_path)
    assert shown.code == 0, shown.stderr
    assert "grid: running" in shown.stdout
    assert "3 tasks: 0 done, 2 running, 1 pending, 0 failed attempts, 0 given up" in shown.stdout
    for task in (0, 1):
        assert f"i={task}" in shown.stdout and f"step {task}" in shown.stdout
    assert "node0" in shown.stdout and "ready" in shown.stdout

    data = json.loads(patas("status", "--json", cwd=tmp_path).stdout)
    (grid,) = data["experiments"]
    assert (grid["live"], grid["total"], grid["done"], grid["running"], grid["pending"]) == (True, 3, 0, 2, 1)
    assert [(t["task_id"], t["attempt"], t["values"], t["node"], t["last_line"]) for t in grid["running_tasks"]] == [
        (0, 1, {"i": "0"}, "node0", "step 0"),
        (1, 1, {"i": "1"}, "node0", "step 1"),
    ]
    assert all(t["elapsed_s"] >= 0 for t in grid["running_tasks"])
    assert grid["nodes"] == [{"name": "node0", "agents": 1, "slots": 2, "busy": 2, "state": "ready"}]

    (tmp_path / "go").touch()
    assert sweep.wait(60) == 0
    after = json.loads(patas("status", "--json", cwd=tmp_path).stdout)["experiments"][0]
    assert (after["live"], after["done"], after["running"], after["running_tasks"]) == (False, 3, 0, [])
    assert not (lab / "grid" / CONTROL_DIR).exists()  # the run took its socket away


def test_status_after_the_run_comes_from_the_journal_with_failures_grouped(tmp_path):
    command = "echo {i}; test {i} != 1 || test -e fixed"
    run = patas("explore", "--cmd", command, "--va", "i", "0", "3", "1", "--max-tries", "2", "--halt", "never", "-y", cwd=tmp_path)
    assert run.code == 3, run.stderr
    data = json.loads(patas("status", "--json", cwd=tmp_path).stdout)
    assert data["lab"] == "pataslab"
    (grid,) = data["experiments"]
    assert set(grid) == EXPERIMENT_KEYS
    expected = {"name": "grid", "total": 3, "done": 2, "running": 0, "pending": 0, "failed": 2, "given_up": 1,
                "rate_per_s": None, "eta_s": None, "live": False, "running_tasks": [], "nodes": [],
                "failures": [{"kind": "exit 1", "count": 2, "task_ids": [1]}]}  # fmt: skip
    assert grid == expected
    shown = patas("status", "grid", cwd=tmp_path)
    assert shown.code == 0, shown.stderr
    assert "grid: not running" in shown.stdout
    assert "3 tasks: 2 done, 0 running, 0 pending, 2 failed attempts, 1 given up" in shown.stdout
    assert "exit 1" in shown.stdout

    # Fixed and run again: the task is done, and its old failures no longer stand.
    (tmp_path / "fixed").touch()
    assert patas("explore", "--cmd", command, "--va", "i", "0", "3", "1", "-y", cwd=tmp_path).code == 0
    grid = json.loads(patas("status", "--json", cwd=tmp_path).stdout)["experiments"][0]
    assert (grid["done"], grid["failed"], grid["given_up"], grid["failures"]) == (3, 0, 0, [])


def test_a_lab_path_longer_than_a_socket_address_is_asked_all_the_same(tmp_path, sweeps):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    lab = deep / "pataslab"
    assert len(str(lab / "grid" / CONTROL_DIR / SOCKET_NAME)) > 108
    sweep = sweeps("--cmd", f"echo 'deep {{i}}'; {gate(tmp_path)}", "--va", "i", "0", "2", "1", "-j", "2", "-o", str(lab))
    wait_for(lambda: two_running(lab) or sweep.poll() is not None, START_TIMEOUT_S, "two tasks running")
    assert sweep.poll() is None, sweep.communicate()
    shown = patas("status", "-o", str(lab), cwd=tmp_path)
    assert shown.code == 0, shown.stderr
    assert "deep 0" in shown.stdout and "deep 1" in shown.stdout


# --- another user ---------------------------------------------------------------------------

PYENV_RUNNER = """
set -e
mkdir -p "$SHARED/interpreter"
mount --bind "$PREFIX_ROOT" "$SHARED/interpreter"
mount -t tmpfs -o mode=0755 tmpfs "$HIDDEN"
mkdir -p "$PREFIX_ROOT"
mount --bind "$SHARED/interpreter" "$PREFIX_ROOT"
umount "$SHARED/interpreter"
cd "$SHARED"
exec runuser -u "$OTHER" -- env PYTHONPATH="$REPO" COLUMNS=200 "$PYTHON" -m patas "$@"
"""


@pytest.fixture
def other_user():
    """A throwaway Unix user, and a way to run `patas` as that user (deleted after)."""
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("useradd", "userdel", "runuser", "unshare")):
        pytest.skip("needs root and useradd, userdel, runuser, unshare")
    name = f"patasst{os.getpid() % 100000}"
    subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh", "--password", "*", name],
                   check=True, capture_output=True)  # fmt: skip
    shared = Path(tempfile.mkdtemp(prefix="patas-status-"))
    os.chmod(shared, 0o755)  # the lab must be reachable to the other user: the channel is what refuses
    try:
        yield name, shared
    finally:
        subprocess.run(["userdel", "-f", name], capture_output=True)
        shutil.rmtree(shared, ignore_errors=True)


def run_as(user: str, shared: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`patas ARGS` as `user`, in `shared`. The interpreter may sit under a folder only root can
    enter (pyenv in /root): a private mount namespace shows that folder to the user as a
    traversable tmpfs holding the interpreter's tree, and nothing else."""
    prefix = Path(sys.base_prefix)
    hidden = next((p for p in [*reversed(prefix.parents), prefix] if p != Path("/") and not os.stat(p).st_mode & stat.S_IXOTH), None)
    environment = {**ENV, "SHARED": str(shared), "OTHER": user, "REPO": str(REPO), "PYTHON": sys.executable}
    if hidden is None:
        command = ["runuser", "-u", user, "--", "env", f"PYTHONPATH={REPO}", sys.executable, "-m", "patas", *args]
        return subprocess.run(command, cwd=shared, env=environment, capture_output=True, text=True, timeout=60)
    root_of_prefix = hidden / prefix.relative_to(hidden).parts[0] if prefix != hidden else prefix
    environment.update(HIDDEN=str(hidden), PREFIX_ROOT=str(root_of_prefix))
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", PYENV_RUNNER, "runner", *args]
    return subprocess.run(command, cwd=shared, env=environment, capture_output=True, text=True, timeout=60)


def test_another_user_is_refused_status_and_nodes(other_user, sweeps):
    user, shared = other_user
    lab = shared / "pataslab"
    sweep = sweeps("--cmd", f"echo 'secret {{i}}'; {gate(shared)}", "--va", "i", "0", "2", "1", "-j", "2", "-o", str(lab), cwd=shared)
    wait_for(lambda: two_running(lab) or sweep.poll() is not None, START_TIMEOUT_S, "two tasks running")
    assert sweep.poll() is None, sweep.communicate()
    control = lab / "grid" / CONTROL_DIR
    assert stat.S_IMODE(os.stat(control).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(control / SOCKET_NAME).st_mode) == 0o600

    refused = run_as(user, shared, "status")
    assert refused.returncode == 1, refused
    assert refused.stderr.startswith(f"Error: pataslab/grid/{CONTROL_DIR}/{SOCKET_NAME}: permission denied: the run in pataslab/grid belongs to another user"), refused.stderr
    assert "secret" not in refused.stdout + refused.stderr
    assert run_as(user, shared, "nodes", "remove", "grid", "node0").returncode == 1

    # Even when the folder and socket are opened to everyone, the run checks who asks.
    os.chmod(control, 0o777)
    os.chmod(control / SOCKET_NAME, 0o666)
    refused = run_as(user, shared, "status")
    uid = pwd.getpwnam(user).pw_uid
    assert refused.returncode == 1, refused
    assert refused.stderr == f"Error: pataslab/grid: the run belongs to uid {os.getuid()}; uid {uid} may not ask it\n"
    removed = run_as(user, shared, "nodes", "remove", "grid", "node0")
    assert removed.returncode == 1 and "may not ask it" in removed.stderr
    assert live(lab).nodes[0].state == "ready"  # nothing changed
    (shared / "go").touch()
    assert sweep.wait(60) == 0
