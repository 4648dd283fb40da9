"""`patas explore` end to end: a real broker, a real agent process, real files."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path


from tests.running import REPO, done_ids, journal, patas, processes_with, start_patas

README_EXPLORE = [
    "explore", "--type", "grid",
    "--cmd", "./main.py {neurons} {activation} {preprocessing}",
    "--va", "neurons", "1", "51", "2",
    "--vl", "preprocessing", "fast", "medium", "intense",
    "--vl", "activation", "relu", "leaky_relu", "sigmoid", "tanh",
    "--node", "localhost",
    "--repeat", "10",
]  # fmt: skip


def test_readme_command_runs_verbatim_then_resumes_exactly_what_is_missing(tmp_path):
    workdir = tmp_path / "basic_usage"
    workdir.mkdir()
    shutil.copy2(REPO / "examples" / "basic_usage" / "main.py", workdir)
    lab = workdir / "pataslab" / "grid"

    first = patas(*README_EXPLORE, cwd=workdir, timeout=600)
    assert first.code == 0, first.stderr
    assert done_ids(lab) == list(range(3000))
    assert "Test accuracy:      " in (lab / "1160" / "stdout").read_text()
    assert "3,000 tasks (0 done, 3,000 to run)" in first.stderr

    again = patas(*README_EXPLORE, cwd=workdir)
    assert again.code == 0 and "Nothing to run" in again.stderr
    assert len(journal(lab)) == 3000

    deleted = [3, 17, 100, 101, 999, 1160, 1500, 2048, 2998, 2999]
    for task_id in deleted:
        shutil.rmtree(lab / str(task_id))
    third = patas(*README_EXPLORE, "-y", cwd=workdir)
    assert third.code == 0, third.stderr
    assert sorted(r["task_id"] for r in journal(lab)[3000:]) == deleted
    assert all((lab / str(i) / "stdout").exists() for i in deleted)


def test_values_reach_the_program_exactly(tmp_path):
    run = patas("explore", "--cmd", "printf '[%s]' {v}", "--vl", "v", "a b", "it's", "$(id)", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    outputs = {(tmp_path / "pataslab/grid" / str(i) / "stdout").read_text() for i in range(3)}
    assert outputs == {"[a b]", "[it's]", "[$(id)]"}


def test_foreign_braces_and_quotes_reach_the_shell_untouched(tmp_path):
    command = """echo 'a   b' | awk '{print $1 "-" $2}'; python3 -c 'print(7+1)'; echo "${HOME:+home} {x}" """
    run = patas("explore", "--cmd", command, "--vl", "x", "X", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert (tmp_path / "pataslab/grid/0/stdout").read_text() == "a-b\n8\nhome X\n"


def test_tasks_see_the_patas_environment(tmp_path):
    run = patas(
        "explore", "--cmd", "env | grep ^PATAS_ | sort", "--vl", "act", "relu", "--repeat", "2",
        "--node", "127.0.0.1", "1", "--name", "envs", "-y", cwd=tmp_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    env = dict(line.split("=", 1) for line in (tmp_path / "pataslab/envs/1/stdout").read_text().splitlines())
    task_dir = Path(env.pop("PATAS_TASK_DIR"))  # the attempt's own folder, gone with its agent
    assert task_dir.name.startswith("task-") and task_dir.parent.name.startswith("patas-") and not task_dir.exists()
    assert env == {
        "PATAS_VAR_act": "relu", "PATAS_ATTEMPT": "1", "PATAS_WORK_DIR": str(tmp_path) if not str(tmp_path).startswith(
            os.path.expanduser("~") + "/") else "$HOME" + str(tmp_path)[len(os.path.expanduser("~")):],
        "PATAS_CLUSTER_NAME": "cluster", "PATAS_NODE_NAME": "node0", "PATAS_CLUSTER_IN_LAB": "0",
        "PATAS_NODE_IN_LAB": "0", "PATAS_NODE_IN_CLUSTER": "0", "PATAS_WORKER_IN_LAB": "0",
        "PATAS_WORKER_IN_CLUSTER": "0", "PATAS_WORKER_IN_NODE": "0", "PATAS_TASK_ID": "1", "PATAS_REPEAT_ID": "1",
        "PATAS_COMBINATION_ID": "0", "PATAS_EXPERIMENT_NAME": "envs",
    }  # fmt: skip


def test_commands_run_in_order_and_a_task_stops_at_its_first_failure(tmp_path):
    run = patas(
        "explore", "--cmd", "echo one {n}", "--cmd", "test {n} = 1", "--cmd", "echo three {n}",
        "--vl", "n", "1", "2", "--max-tries", "1", "-y", cwd=tmp_path,
    )  # fmt: skip
    lab = tmp_path / "pataslab/grid"
    assert run.code == 3
    assert (lab / "0/stdout").read_text() == "one 1\nthree 1\n"
    assert (lab / "1/attempt-1.stdout").read_text() == "one 2\n" and not (lab / "1/stdout").exists()


def test_failed_attempts_are_retried_and_kept(tmp_path):
    script = 'echo "attempt $PATAS_ATTEMPT"; echo "oops $PATAS_ATTEMPT" >&2; test "$PATAS_ATTEMPT" -ge {ok_at}'
    run = patas("explore", "--cmd", script, "--vl", "ok_at", "2", "--max-tries", "3", "-y", cwd=tmp_path)
    lab = tmp_path / "pataslab/grid/0"
    assert run.code == 0, run.stderr
    assert (lab / "attempt-1.stdout").read_text() == "attempt 1\n" and (lab / "attempt-1.stderr").read_text() == "oops 1\n"
    assert (lab / "stdout").read_text() == "attempt 2\n"
    assert [(r["attempt"], r["outcome"], r["exit_code"]) for r in journal(lab.parent)] == [(1, "failed", 1), (2, "done", 0)]
    assert "grid task 0 (ok_at=2) attempt 1/3 on node0: exit 1; will retry" in run.stderr
    assert "    oops 1" in run.stderr


def test_a_task_given_up_makes_the_run_exit_3(tmp_path):
    run = patas("explore", "--cmd", "echo bad {x} >&2; exit 4", "--vl", "x", "1", "--max-tries", "2", "-y", cwd=tmp_path)
    assert run.code == 3
    assert "attempt 2/2 on node0: exit 4; giving up" in run.stderr and "    bad 1" in run.stderr
    assert "0 done, 1 failed" in run.stderr


def test_timeout_kills_the_whole_process_tree(tmp_path):
    marker = "4242.%d" % os.getpid()
    command = f"sleep {marker} & sleep {marker}; echo never"
    started = time.monotonic()
    run = patas("explore", "--cmd", command + " {x}", "--vl", "x", "1", "--timeout", "1", "--max-tries", "1", "-y", cwd=tmp_path)
    assert time.monotonic() - started < 20
    assert run.code == 3 and "timed out; giving up" in run.stderr
    assert journal(tmp_path / "pataslab/grid")[0]["outcome"] == "timeout"
    assert processes_with(marker) == []


def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(tmp_path):
    marker = "0.3%d" % os.getpid()
    process = start_patas("explore", "--cmd", f"sleep {marker}; echo {{i}}", "--va", "i", "0", "60", "1", "-y", cwd=tmp_path)
    lab = tmp_path / "pataslab/grid"
    deadline = time.monotonic() + 60
    while len(journal(lab)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    assert processes_with(marker) == []
    done = done_ids(lab)
    assert 4 <= len(done) < 60
    committed = sorted(int(p.parent.name) for p in lab.glob("*/stdout"))
    assert committed == done  # nothing half-done counts, nothing done is missing

    run = patas("explore", "--cmd", f"sleep {marker}; echo {{i}}", "--va", "i", "0", "60", "1", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert done_ids(lab) == list(range(60))
    assert all((lab / str(i) / "stdout").read_text() == f"{i}\n" for i in range(60))


def test_output_is_streamed_not_held_in_memory(tmp_path):
    wrapper = tmp_path / "measure.py"
    wrapper.write_text(
        "import atexit, resource, sys\n"
        "atexit.register(lambda: print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
        "from patas.cli.main import main\nmain()\n"
    )

    def peak_kib(size: int) -> int:
        run = patas_with(wrapper, "explore", "--cmd", "head -c {n} /dev/zero", "--vl", "n", str(size), "-o", f"lab{size}", "-y")
        assert run.returncode == 0, run.stderr
        assert (tmp_path / f"lab{size}/grid/0/stdout").stat().st_size == size
        return int(run.stderr.split("PEAK")[1].split()[0])

    def patas_with(script: Path, *args: str):
        import subprocess

        from tests.running import ENV

        return subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)

    small, large = peak_kib(1000), peak_kib(200_000_000)
    assert large - small < 40 * 1024, f"coordinator grew by {(large - small) // 1024} MiB for 200 MB of output"


def test_options_name_output_workdir_and_filter(tmp_path):
    (tmp_path / "work").mkdir()
    run = patas(
        "explore", "--cmd", "pwd; echo {i}", "--va", "i", "0", "10", "1", "--name", "mine", "-o", "out",
        "--workdir", str(tmp_path / "work"), "--filter-tasks", "2:4", "-y", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    lab = tmp_path / "out/mine"
    assert done_ids(lab) == [2, 3, 4]
    assert (lab / "3/stdout").read_text() == f"{tmp_path / 'work'}\n3\n"
    assert "ready" not in run.stderr  # quiet


def test_redo_runs_done_tasks_again_without_overwriting_attempts(tmp_path):
    args = ("explore", "--cmd", "echo $PATAS_ATTEMPT {x}", "--vl", "x", "a", "-y")
    assert patas(*args, cwd=tmp_path).code == 0
    assert patas(*args, "--redo", cwd=tmp_path).code == 0
    assert (tmp_path / "pataslab/grid/0/stdout").read_text() == "2 a\n"
    # Replacing a committed output is announced first, so a crash midway leaves the task not done.
    records = [(r["attempt"], r["outcome"]) for r in journal(tmp_path / "pataslab/grid")]
    assert records == [(1, "done"), (2, "replacing"), (2, "done")]


def test_experiment_and_cluster_files_mix_with_flags(tmp_path):
    (tmp_path / "exp.yaml").write_text(
        "name: fromfile\ncmd: echo {b} $PATAS_NODE_NAME\nvars:\n  - {name: b, type: geometric, min: 1, max: 10, factor: 3}\n"
    )
    (tmp_path / "cluster.yaml").write_text("name: here\nnodes:\n  - {name: box, hostname: localhost, workers: 2, tags: [cpu]}\n")
    run = patas(
        "explore", "--experiment", "exp.yaml", "--cluster", "cluster.yaml", "--cmd", "echo {g}",
        "--vg", "g", "2", "20", "2", "--filter-nodes", "cpu", "-y", cwd=tmp_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert [(tmp_path / f"pataslab/fromfile/{i}/stdout").read_text() for i in range(3)] == ["1 box\n", "3 box\n", "9 box\n"]
    assert [(tmp_path / f"pataslab/grid/{i}/stdout").read_text() for i in range(4)] == ["2\n", "4\n", "8\n", "16\n"]
    assert {r["cluster_name"] for r in journal(tmp_path / "pataslab/grid")} == {"here"}


def test_name_renames_the_one_experiment_of_a_file_and_is_refused_for_several(tmp_path):
    # It was ignored: the outputs went to the file's own name.
    (tmp_path / "exp.yaml").write_text("name: fromfile\ncmd: echo {b}\nvars: [{name: b, values: [1, 2]}]\n")
    (tmp_path / "more.yaml").write_text("cmd: echo more\n")
    run = patas("explore", "--experiment", "exp.yaml", "--name", "renamed", "-y", "-q", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "pataslab").iterdir()) == ["renamed"]
    assert [(tmp_path / f"pataslab/renamed/{i}/stdout").read_text() for i in range(2)] == ["1\n", "2\n"]
    assert "name: \"renamed\"" in (tmp_path / "pataslab/renamed/experiment.yaml").read_text()
    refused = patas("explore", "--experiment", "exp.yaml", "--experiment", "more.yaml", "--name", "x", "-y", cwd=tmp_path)
    assert (refused.code, refused.stderr) == (1, "Error: --name x: names one experiment, and 2 files are given (set each one's 'name:')\n")
    bad = patas("explore", "--experiment", "exp.yaml", "--name", "a/b", "-y", cwd=tmp_path)
    assert bad.stderr == "Error: --name: experiment name 'a/b' must start with a letter or _, then letters, digits, _, - or .\n"
    assert sorted(p.name for p in (tmp_path / "pataslab").iterdir()) == ["renamed"]


def test_an_edited_grid_runs_only_what_is_new(tmp_path):
    assert patas("explore", "--cmd", "echo {a}", "--vl", "a", "1", "2", "3", "-y", cwd=tmp_path).code == 0
    run = patas("explore", "--cmd", "echo {a}", "--vl", "a", "1", "3", "4", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert "3 tasks (2 done, 1 to run)" in run.stderr
    assert "changed since the last run: variable a: +4 -2" in run.stderr
    assert "1 done task of the old grid no longer applies (kept on disk)" in run.stderr
    assert (tmp_path / "pataslab/grid/1/stdout").read_text() == "2\n"  # kept
    assert (tmp_path / "pataslab/grid/3/stdout").read_text() == "4\n"  # new, with an id of its own


def test_no_terminal_means_no_question(tmp_path):
    run = patas("explore", "--cmd", "echo {a}", "--vl", "a", "1", cwd=tmp_path, stdin="n\n")
    assert run.code == 0 and done_ids(tmp_path / "pataslab/grid") == [0]


def test_help_imports_nothing_heavy(tmp_path):
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom patas.cli.app import cli\n"
        "for args in (['--help'], ['explore', '--help']): assert CliRunner().invoke(cli, args).exit_code == 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'duckdb', 'seaborn', 'zmq', 'matplotlib', 'paramiko', 'rich'}))"
    )
    import subprocess

    from tests.running import ENV

    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.strip() == "[]", done.stderr
