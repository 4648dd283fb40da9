"""What `patas explore` prints: --dry-run, -j, -q, plain output, the question."""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import subprocess
import sys
from pathlib import Path

from patas.cli import progress
from tests.running import ENV, REPO, patas

DOC = (REPO / "docs" / "explore.md").read_text()


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_the_documented_dry_run_prints_exactly_that_and_writes_nothing(tmp_path):
    block = DOC[DOC.index("$ patas explore --cmd './main.py {n} {act}'") :].split("```")[0]
    lines = block.splitlines()
    command, expected = lines[0][2:], lines[1:]
    run = patas(*shlex.split(command)[1:], cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert run.stderr.splitlines() + run.stdout.splitlines() == expected
    assert list(tmp_path.iterdir()) == []  # not even a pataslab folder


def test_a_dry_run_leaves_a_lab_byte_identical_and_contacts_no_node(tmp_path):
    assert patas("explore", "--cmd", "echo {i}", "--va", "i", "0", "3", "1", "-y", cwd=tmp_path).code == 0
    before = snapshot(tmp_path)
    # Port 1 on loopback: nothing listens there, so contacting the node would fail the run.
    run = patas("explore", "--cmd", "echo {i}", "--va", "i", "0", "5", "1", "--node", "nobody@127.0.0.1:1", "--dry-run", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert "5 tasks (3 done, 2 to run)" in run.stderr
    assert "Nodes (not contacted): node0 (nobody@127.0.0.1:1, a worker per core)" in run.stderr
    assert run.stdout == "grid 3: echo 3\ngrid 4: echo 4\n"
    assert snapshot(tmp_path) == before


def test_j_is_short_for_a_local_node_and_refuses_other_nodes(tmp_path):
    run = patas("explore", "--cmd", "echo {i} $PATAS_WORKER_IN_NODE", "--va", "i", "0", "2", "1", "-j", "1", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert "Nodes: node0 (localhost, 1 worker)" in run.stderr
    both = patas("explore", "--cmd", "echo {i}", "--vl", "i", "1", "-j", "2", "--node", "localhost", "-y", cwd=tmp_path)
    assert both.code == 2
    assert both.stderr == "Error: -j N runs N tasks at once on this machine; leave out --node, --cluster and --pool (or add --node localhost N)\n"


def test_quiet_prints_only_the_summary(tmp_path):
    run = patas("explore", "--cmd", "echo {i}; test {i} != 1", "--va", "i", "0", "3", "1", "--max-tries", "2", "-q", "-y", cwd=tmp_path)
    assert run.code == 3
    lines = run.stderr.splitlines()
    assert lines[0].startswith("Finished: 2 done, 1 failed, 1 retried in ")
    assert lines[1:] == ["Failed 1 task:", "  exit 1: 1 task (grid 1); see: cat pataslab/grid/1/attempt-2.stdout"]


def test_quiet_still_says_which_nodes_the_run_goes_without(tmp_path):
    # Nothing listens on port 1 here: the node is refused at once, and the run goes on without it.
    run = patas("explore", "--cmd", "echo {i}", "--va", "i", "0", "2", "1", "--node", "localhost", "1", "--node", "127.0.0.1:1", "1", "-q", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    lines = run.stderr.splitlines()
    assert lines[:2] == ["1/2 nodes up; left out:", "  node1: cannot connect to 127.0.0.1:1: connection refused"]
    assert lines[2].startswith("Finished: 2 done, 0 failed in ") and len(lines) == 3


def test_counts_agree_in_number_and_slow_rates_keep_their_decimals(tmp_path):
    run = patas("explore", "--cmd", "sleep 1.2; echo {i}", "--vl", "i", "1", "-j", "1", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert "Experiment grid: 1 combination × 1 repeat = 1 task (0 done, 1 to run)" in run.stderr
    assert re.search(r"Finished: 1 done, 0 failed in [\d.]+ s \(0\.\d+ tasks/s\)", run.stderr), run.stderr


def test_output_to_a_pipe_is_not_wrapped(tmp_path):
    long_value = "x" * 150
    env = {**ENV, "COLUMNS": "40"}  # rich would wrap at this width
    done = subprocess.run(
        [sys.executable, "-m", "patas", "explore", "--cmd", "echo {v} >&2; exit 1", "--vl", "v", long_value, "--max-tries", "1", "-y"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3
    assert f"    {long_value}\n" in done.stderr
    assert f"grid task 0 (v={long_value}) attempt 1/1 on node0: exit 1; giving up\n" in done.stderr


def test_answering_n_runs_nothing_and_exits_0(tmp_path):
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "patas", "explore", "--cmd", "echo {i}", "--vl", "i", "1"],
        cwd=tmp_path, env=ENV, stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    os.close(follower)
    try:
        os.write(leader, b"n\n")
        _, stderr = process.communicate(timeout=60)
    finally:
        os.close(leader)
    assert process.returncode == 0, stderr
    assert "Run 1 task on 1 node with" in stderr and stderr.endswith("Nothing was run.\n")
    assert not (tmp_path / "pataslab").exists()


# Runs explore with stderr on a terminal (stdin is not one, so nothing is asked) and the bar's delay
# given; prints at exit whether rich was ever imported.
_ON_A_TERMINAL = (
    "import atexit, sys\nimport patas.cli.progress as progress\n"
    "progress.BAR_DELAY_S = float(sys.argv[2])\n"
    "atexit.register(lambda: print('rich' in sys.modules))\n"
    "sys.argv = ['patas', 'explore', '--cmd', sys.argv[1], '--vl', 'i', '1', '-y']\n"
    "from patas.cli.main import main\nmain()\n"
)


def _explore_on_a_terminal(cwd: Path, command: str, bar_delay_s: float) -> tuple[str, str]:
    """(stdout, what the terminal showed) of a run of `command` with stderr on a pty."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", _ON_A_TERMINAL, command, str(bar_delay_s)], cwd=cwd, env=ENV,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower, text=True,
    )  # fmt: skip
    os.close(follower)
    shown = b""
    try:
        while True:
            readable, _, _ = select.select([leader], [], [], 60)
            assert readable, f"the terminal saw nothing for 60 s: {shown!r}"
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the run has ended and closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        stdout, _ = process.communicate(timeout=60)
    finally:
        os.close(leader)
    assert process.returncode == 0, shown
    return stdout, shown.decode()


def test_on_a_terminal_a_bar_is_drawn_once_a_run_lasts_and_a_short_run_never_imports_rich(tmp_path):
    (tmp_path / "short").mkdir()
    (tmp_path / "long").mkdir()
    # A delay no run here reaches, however loaded the machine: the run ends before it.
    stdout, shown = _explore_on_a_terminal(tmp_path / "short", "echo {i}", bar_delay_s=600)
    assert stdout == "False\n", shown  # no bar, so rich was never imported
    assert "Finished: 1 done, 0 failed in " in shown
    assert "━" not in shown

    stdout, shown = _explore_on_a_terminal(tmp_path / "long", "sleep 1.5; echo {i}", progress.BAR_DELAY_S)
    assert stdout == "True\n", shown
    assert "━" in shown and "0/1" in shown, shown  # the bar, with its count, while the task ran
    assert "Finished: 1 done, 0 failed in " in shown
