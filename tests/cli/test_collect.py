"""`patas explore --collect`: the files a task writes in its folder come back with its output, and
are committed with it (real runs, real agents, real files)."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import time
from pathlib import Path

import yaml

import patas
from tests.cli.test_pool import POOL, pools, run  # noqa: F401 (a fixture)
from tests.running import children_running, done_ids, journal, patas as run_patas, start_patas

WAIT_S = 60.0


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def committed(task: Path) -> dict[str, bytes]:
    files = task / "files"
    return {str(p.relative_to(files)): p.read_bytes() for p in sorted(files.rglob("*")) if p.is_file()}


WRITE_MODEL = (
    'cd "$PATAS_TASK_DIR" && head -c $((100000 + PATAS_VAR_i * 7919)) /dev/urandom > model.bin && mkdir -p metrics/epochs'
    ' && echo "loss {i}" > metrics/loss.csv && echo {i} > metrics/epochs/1.csv && echo scratch > tmp.txt'
    ' && echo "dir $PATAS_TASK_DIR" && sha256sum model.bin metrics/loss.csv metrics/epochs/1.csv && echo "acc 0.{i}"'
)


def test_each_task_brings_back_its_model_and_metrics_byte_exact(tmp_path):
    run = run_patas("explore", "--cmd", WRITE_MODEL, "--va", "i", "0", "8", "1", "-j", "2",
                    "--collect", "model.bin", "--collect", "metrics", "-y", cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run.stderr
    lab = tmp_path / "pataslab/grid"
    assert done_ids(lab) == list(range(8))
    for i in range(8):
        task = lab / str(i)
        lines = (task / "stdout").read_text().splitlines()
        sums = {name: digest for digest, name in (line.split() for line in lines[1:4])}
        files = committed(task)
        assert sorted(files) == ["metrics/epochs/1.csv", "metrics/loss.csv", "model.bin"]  # not tmp.txt
        assert {name: hashlib.sha256(data).hexdigest() for name, data in files.items()} == sums
        assert files["metrics/loss.csv"] == f"loss {i}\n".encode()  # each task's own
        assert sorted(os.listdir(task)) == ["files", "stdout"]
        assert not Path(lines[0].split(" ", 1)[1]).exists()  # the task's folder on the node is gone
    # What reads outputs is not disturbed by the folders beside them.
    logs = run_patas("logs", "grid", "3", cwd=tmp_path)
    assert logs.code == 0 and logs.stdout.endswith("acc 0.3\n")
    parsed = run_patas("parse", "-e", "pataslab/grid", "-p", "acc", r"acc (@float@)", "-o", "t.csv", cwd=tmp_path)
    assert parsed.code == 0, parsed.stderr
    with open(tmp_path / "t.csv", newline="") as table:
        assert sorted(row["out_acc"] for row in csv.DictReader(table)) == [f"0.{i}" for i in range(8)]


def test_a_failed_attempt_keeps_its_files_and_the_retry_commits_its_own(tmp_path):
    command = 'echo "try $PATAS_ATTEMPT" > "$PATAS_TASK_DIR/model.bin"; test "$PATAS_ATTEMPT" -ge 2'
    run = run_patas("explore", "--cmd", command, "--collect", "model.bin", "--max-tries", "2", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    task = tmp_path / "pataslab/grid/0"
    assert (task / "attempt-1.files/model.bin").read_text() == "try 1\n"
    assert committed(task) == {"model.bin": b"try 2\n"}
    logs = run_patas("logs", "grid", "0", "--attempt", "1", cwd=tmp_path)
    assert logs.code == 0


def test_a_task_killed_mid_write_commits_no_half_file(tmp_path):
    # Attempt 1 writes half its model and is killed; attempt 2 writes it whole.
    command = (
        'head -c 300000 /dev/zero > "$PATAS_TASK_DIR/model.bin"; test "$PATAS_ATTEMPT" -ge 2 || kill -9 $$;'
        ' head -c 300000 /dev/zero >> "$PATAS_TASK_DIR/model.bin"'
    )
    run = run_patas("explore", "--cmd", command, "--collect", "model.bin", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    task = tmp_path / "pataslab/grid/0"
    assert (task / "attempt-1.files/model.bin").stat().st_size == 300000
    assert committed(task) == {"model.bin": bytes(600000)}


def test_an_agent_killed_while_its_files_travel_leaves_them_under_its_attempt(tmp_path):
    size = 200 * 2**20  # long enough in transit to be caught there
    command = f'head -c {size} /dev/zero > "$PATAS_TASK_DIR/model.bin"; echo attempt $PATAS_ATTEMPT'
    process = start_patas("explore", "--cmd", command, "--collect", "model.bin", "--no-sync", "-y", cwd=tmp_path)
    staged = tmp_path / "pataslab/grid/0/attempt-1.files/model.bin"
    deadline = time.monotonic() + WAIT_S
    while not (staged.exists() and staged.stat().st_size > 0):
        assert time.monotonic() < deadline and process.poll() is None, "the file never started arriving"
        time.sleep(0.002)
    (agent,) = children_running(process.pid, "patas.agent")
    os.kill(agent, signal.SIGKILL)
    _, stderr = process.communicate(timeout=WAIT_S * 2)
    assert process.returncode == 0, stderr
    assert "starting a new agent (1 of 3)" in stderr
    task = tmp_path / "pataslab/grid/0"
    assert 0 < staged.stat().st_size < size  # the first attempt's half file stayed under it
    assert (task / "stdout").read_text() == "attempt 2\n"
    assert (task / "files/model.bin").stat().st_size == size
    assert [r["attempt"] for r in journal(tmp_path / "pataslab/grid") if r["outcome"] == "done"] == [2]


def test_links_out_of_the_task_folder_are_not_followed(tmp_path):
    (tmp_path / "secret").write_text("workdir file\n")
    command = (
        f'cd "$PATAS_TASK_DIR" && ln -s {tmp_path}/secret secret && ln -s {tmp_path} work && ln -s /etc etc'
        " && echo mine > mine"
    )
    run = run_patas("explore", "--cmd", command, "--collect", "**", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert committed(tmp_path / "pataslab/grid/0") == {"mine": b"mine\n"}


def test_files_over_the_limit_fail_the_task_with_one_clear_line(tmp_path):
    command = 'head -c 300000 /dev/zero > "$PATAS_TASK_DIR/model.bin"; echo x > "$PATAS_TASK_DIR/note"'
    run = run_patas("explore", "--cmd", command, "--collect", "*", "--collect-limit", "200K", "-y", cwd=tmp_path)
    assert run.code == 3, run.stderr
    message = (
        "its collected files take 293.0 KiB, more than the collect limit of 200.0 KiB"
        " (largest: model.bin 293.0 KiB, note 2 B); raise --collect-limit or collect fewer files"
    )
    assert f"attempt 1/3 on node0: {message}; giving up" in run.stderr
    (record,) = journal(tmp_path / "pataslab/grid")  # not tried again: it would write as much
    assert (record["outcome"], record["exit_code"], record["error"]) == ("failed", 0, message)
    assert not (tmp_path / "pataslab/grid/0/files").exists() and not (tmp_path / "pataslab/grid/0/attempt-1.files").exists()


def test_gigabytes_of_files_stop_at_the_default_limit_before_a_byte_is_sent(tmp_path):
    command = 'truncate -s 2G "$PATAS_TASK_DIR/huge.bin" && echo small > "$PATAS_TASK_DIR/small.txt"'  # sparse: costs nothing
    run = run_patas("explore", "--cmd", command, "--collect", "**", "--max-tries", "1", "-y", cwd=tmp_path)
    assert run.code == 3, run.stderr
    assert (
        "its collected files take 2.0 GiB, more than the collect limit of 1.0 GiB (largest: huge.bin 2.0 GiB,"
        " small.txt 6 B); raise --collect-limit or collect fewer files"
    ) in run.stderr
    assert os.listdir(tmp_path / "pataslab/grid/0") == []  # nothing of it came


def test_collect_in_an_experiment_file_and_from_python(tmp_path):
    (tmp_path / "exp.yaml").write_text(
        "name: yaml\ncmd: echo {i} > $PATAS_TASK_DIR/out-{i}.txt\nvars: [{name: i, values: [1, 2]}]\n"
        "collect: ['out-*.txt']\ncollect_limit: 1M\n"
    )
    run = run_patas("explore", "--experiment", "exp.yaml", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert [committed(tmp_path / f"pataslab/yaml/{i}") for i in (0, 1)] == [{"out-1.txt": b"1\n"}, {"out-2.txt": b"2\n"}]
    recorded = yaml.safe_load((tmp_path / "pataslab/yaml/experiment.yaml").read_text())
    assert (recorded["collect"], recorded["collect_limit"]) == (["out-*.txt"], 1048576)

    result = patas.explore('echo {n} > "$PATAS_TASK_DIR/n"', {"n": [5, 6]}, lab=tmp_path / "lab", jobs=2, collect="n")
    assert result.ok
    assert [committed(result.folder / str(i)) for i in (0, 1)] == [{"n": b"5\n"}, {"n": b"6\n"}]


def test_a_pools_agents_collect_files_too(pools, tmp_path):
    root, env = pools
    up = run(env, tmp_path, "pool", "up", "--name", POOL, "--node", "localhost", "2")
    assert up.returncode == 0, up.stderr
    size = 3 * 2**20  # more than a chunk: relayed chunk by chunk, with the run's credit
    command = f'head -c {size} /dev/urandom > "$PATAS_TASK_DIR/model.bin"; sha256sum < "$PATAS_TASK_DIR/model.bin"'
    sweep = run(env, tmp_path, "explore", "--pool", POOL, "--cmd", command, "--repeat", "4", "--collect", "model.bin", "-y")
    assert sweep.returncode == 0, sweep.stderr
    for i in range(4):
        task = tmp_path / "pataslab/grid" / str(i)
        assert sha256(task / "files/model.bin") == (task / "stdout").read_text().split()[0]
