"""`patas explore --type random|sobol|tpe`: a real coordinator, real agents, real programs, and
the study in the lab read back with Optuna."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.running import REPO, children_running, journal, patas, processes_with, start_patas

TRAIN = REPO / "examples" / "search" / "train.py"
SPACE = ["--va", "hidden", "8", "257", "8", "--vl", "activation", "relu", "tanh", "logistic", "--vlog", "alpha", "1e-5", "1"]
OBJECTIVE = ["--objective", "max", "test_acc", "Test accuracy: (@float@)"]
QUICK = f"EPOCHS=2 EPOCH_SECONDS=0 {TRAIN} {{hidden}} {{activation}} {{alpha}}"


def study_trials(lab: Path, name: str | None = None) -> list:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(lab / "study.journal")))
    study = optuna.load_study(study_name=name or lab.name, storage=storage)
    return study.get_trials(deepcopy=False)


def search(tmp_path: Path, kind: str, trials: int, *extra: str, command: str = QUICK, jobs: str = "2", timeout: float = 120):
    return patas(
        "explore", "--type", kind, "--trials", str(trials), "--cmd", command, *SPACE, *OBJECTIVE, "-j", jobs, "--name", "s", "-y",
        *extra, cwd=tmp_path, timeout=timeout,
    )


@pytest.mark.parametrize("kind", ["random", "sobol", "tpe"])
def test_each_sampler_runs_its_trials_once_each_and_records_the_search(tmp_path, kind):
    run = search(tmp_path, kind, 5, "--seed", "7")
    assert run.code == 0, run.stderr
    lab = tmp_path / "pataslab/s"
    trials = study_trials(lab)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 5
    done = [r for r in journal(lab) if r["outcome"] == "done"]
    assert sorted(r["task_id"] for r in done) == list(range(5))
    by_task = {r["task_id"]: r for r in done}
    for trial in trials:
        record = by_task[trial.number]
        assert record["extra"] == {"trial": trial.number}
        assert record["values"]["hidden"] == str(8 + 8 * trial.params["hidden"])  # a stepped range: a position in its values
        assert record["values"]["alpha"] == repr(trial.params["alpha"]) and 1e-5 <= trial.params["alpha"] <= 1
        # The value told to Optuna is the last match in the committed output.
        assert f"Test accuracy: {trial.value:.6f}" in (lab / str(trial.number) / "stdout").read_text()
    assert "Search: best test_acc" in run.stderr
    definition = yaml.safe_load((lab / "experiment.yaml").read_text())
    assert definition["search"]["type"] == kind
    assert {k: definition["search"]["objective"][k] for k in ("direction", "name")} == {"direction": "max", "name": "test_acc"}


def test_a_search_without_a_name_is_named_after_its_type_beside_the_grid(tmp_path):
    assert patas("explore", "--cmd", "echo {hidden}", "--vl", "hidden", "8", "-y", "-q", cwd=tmp_path).code == 0
    run = patas("explore", "--type", "random", "--trials", "2", "--cmd", QUICK, *SPACE, *OBJECTIVE, "-j", "2", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert run.stderr.startswith("Experiment random: random search, 2 trials")
    assert len(study_trials(tmp_path / "pataslab/random")) == 2
    assert [r["values"] for r in journal(tmp_path / "pataslab/grid")] == [{"hidden": "8"}]  # the grid is left alone


def test_a_grid_is_refused_in_a_search_s_folder_as_a_search_is_in_a_grid_s(tmp_path):
    assert search(tmp_path, "random", 1).code == 0
    lab = tmp_path / "pataslab/s"
    before = {p: p.read_bytes() for p in lab.rglob("*") if p.is_file()}
    grid = patas("explore", "--cmd", "echo {hidden}", "--vl", "hidden", "8", "--name", "s", "-y", cwd=tmp_path)
    assert (grid.code, grid.stderr) == (1, "Error: pataslab/s holds the trials of a random search; give the grid a folder of its own (--name NAME)\n")
    assert {p: p.read_bytes() for p in lab.rglob("*") if p.is_file()} == before
    assert patas("explore", "--cmd", "echo {hidden}", "--vl", "hidden", "8", "--name", "g2", "-y", cwd=tmp_path).code == 0
    mixed = search(tmp_path, "random", 1, "--name", "g2")
    assert mixed.stderr == "Error: pataslab/g2 holds the tasks of a grid; give the search a folder of its own (--name NAME)\n"


def test_a_dry_run_of_a_search_says_why_it_shows_no_command_and_writes_nothing(tmp_path):
    run = patas("explore", "--type", "tpe", "--trials", "3", "--cmd", QUICK, *SPACE, *OBJECTIVE, "-j", "2", "--dry-run", cwd=tmp_path)
    assert (run.code, run.stdout) == (0, "")
    assert run.stderr.splitlines()[-1] == "Dry run: nothing started, nothing written. A search's sampler picks each trial's values as it runs."
    assert not (tmp_path / "pataslab").exists()


def test_a_seed_makes_the_same_suggestions(tmp_path):
    runs = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        assert search(tmp_path / folder, "tpe", 3, "--seed", "11", jobs="1").code == 0
        runs.append([r["values"] for r in journal(tmp_path / folder / "pataslab/s")])
    assert runs[0] == runs[1]


def test_rerunning_continues_the_study_up_to_trials_and_a_changed_space_is_refused(tmp_path):
    assert search(tmp_path, "random", 2, "--seed", "1").code == 0
    run = search(tmp_path, "random", 4, "--seed", "1")
    assert run.code == 0, run.stderr
    lab = tmp_path / "pataslab/s"
    assert len(study_trials(lab)) == 4
    values = [tuple(r["values"].items()) for r in journal(lab)]
    assert len(set(values)) == 4  # the continued run did not suggest the first run's values again
    before = (lab / "study.journal").read_bytes()
    changed = patas("explore", "--type", "random", "--trials", "4", "--cmd", QUICK, *SPACE[:-1], "0.1", *OBJECTIVE, "--seed", "1",
                    "-j", "2", "--name", "s", "-y", cwd=tmp_path)  # fmt: skip
    assert changed.code == 1
    assert changed.stderr == (
        "Error: experiment 's': its variables changed since the study in pataslab/s/study.journal began;"
        " run it as before to continue it, or add --new-study to start a new study\n"
    )
    assert (lab / "study.journal").read_bytes() == before
    fresh = patas("explore", "--type", "random", "--trials", "2", "--cmd", QUICK, *SPACE[:-1], "0.1", *OBJECTIVE, "--seed", "1",
                  "-j", "2", "--name", "s", "--new-study", "-y", cwd=tmp_path)  # fmt: skip
    assert fresh.code == 0, fresh.stderr
    second = study_trials(lab, "s-2")
    assert len(second) == 2 and all(t.params["alpha"] <= 0.1 for t in second)
    assert sorted(r["task_id"] for r in journal(lab)[-2:]) == [4, 5]  # after every id of the first study


def test_a_lock_a_killed_run_left_on_the_study_does_not_stop_the_next_run(tmp_path):
    # What Optuna's own file lock (a symbolic link beside the study) leaves when a run is
    # SIGKILLed while it writes: a run waited for it forever. The study's lock is an flock now.
    assert search(tmp_path, "random", 2, "--seed", "1").code == 0
    lab = tmp_path / "pataslab/s"
    os.symlink("pataslab/s/study.journal", lab / "study.journal.lock")
    run = search(tmp_path, "random", 3, "--seed", "1")
    assert run.code == 0, run.stderr
    assert len(study_trials(lab)) == 3


def test_a_trial_without_its_objective_in_the_output_fails_with_a_message(tmp_path):
    run = search(tmp_path, "random", 2, command="echo {hidden} {activation} {alpha}")
    assert run.code == 0, run.stderr
    assert [t.state.name for t in study_trials(tmp_path / "pataslab/s")] == ["FAIL", "FAIL"]
    assert "trial 0 failed: task 0: its output has no match for 'Test accuracy: (@float@)'" in run.stderr


def test_an_objective_that_also_matches_nothing_reads_the_last_line(tmp_path):
    objective = ["--objective", "min", "v", "(.*)"]
    run = patas("explore", "--type", "random", "--trials", "2", "--cmd", "echo {alpha}", "--vlog", "alpha", "1e-5", "1", *objective,
                "-j", "2", "--name", "s", "-y", cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run.stderr
    trials = study_trials(tmp_path / "pataslab/s")
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(t.value == t.params["alpha"] for t in trials)


def test_with_repeats_a_trial_is_the_mean_of_its_repeats(tmp_path):
    command = "echo Test accuracy: $PATAS_REPEAT_ID {hidden} {activation} {alpha}"
    run = search(tmp_path, "random", 2, "--repeat", "2", command=command)
    assert run.code == 0, run.stderr
    lab = tmp_path / "pataslab/s"
    assert [t.value for t in study_trials(lab)] == [0.5, 0.5]
    assert sorted((r["task_id"], r["extra"]["trial"], r["repeat_id"]) for r in journal(lab)) == [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)]


PRUNED_SLEEP = "61.25"  # marks the pruned task's process


def test_pruning_kills_the_trial_s_processes_and_keeps_its_output(tmp_path):
    # Task 0 reports a good loss and ends; every later trial reports a worse loss at the same
    # step, then would sleep a minute: ASHA must stop it at that step, and the run kill it.
    command = (
        ": {hidden} {activation} {alpha}; if [ $PATAS_TASK_ID = 0 ]; then echo 'epoch 1 loss 1'; echo 'Test accuracy: 0.9'; "
        f"else echo 'epoch 1 loss 9'; sleep {PRUNED_SLEEP}; echo 'Test accuracy: 0.1'; fi"
    )
    started = time.monotonic()
    run = search(tmp_path, "random", 2, "--report", "min", "loss", "epoch (@int@) loss (@float@)", "--prune", "asha",
                 command=command, jobs="1", timeout=50)  # fmt: skip
    assert run.code == 0, run.stderr
    assert time.monotonic() - started < 45
    lab = tmp_path / "pataslab/s"
    assert [t.state.name for t in study_trials(lab)] == ["COMPLETE", "PRUNED"]
    records = {r["task_id"]: r for r in journal(lab)}
    assert records[1]["outcome"] == "pruned" and records[1]["format"] == 3
    assert (lab / "1" / "stdout").read_text() == "epoch 1 loss 9\n"
    assert patas("logs", "s", "1", cwd=tmp_path).stdout == "epoch 1 loss 9\n"  # the committed output
    assert processes_with(f"sleep {PRUNED_SLEEP}") == []
    assert "1 done, 0 failed, 1 pruned" in run.stderr


def test_a_coordinator_killed_mid_study_resumes_without_losing_or_doubling_a_trial(tmp_path):
    slow = f"EPOCHS=4 EPOCH_SECONDS=0.2 {TRAIN} {{hidden}} {{activation}} {{alpha}}"
    args = ["explore", "--type", "tpe", "--trials", "6", "--seed", "3", "--cmd", slow, *SPACE, *OBJECTIVE, "-j", "2", "--name", "s", "-y"]
    lab = tmp_path / "pataslab/s"
    process = start_patas(*args, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while sum(r["outcome"] == "done" for r in journal(lab)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # its agents see their lifeline close and kill their tasks
    process.wait()
    states = Counter(t.state.name for t in study_trials(lab))
    assert states["RUNNING"] >= 1  # killed mid-study: some trials were running
    run = patas(*args, cwd=tmp_path)
    assert run.code == 0, run.stderr
    trials = study_trials(lab)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    done = [r for r in journal(lab) if r["outcome"] == "done"]
    assert Counter(r["task_id"] for r in done) == {n: 1 for n in range(6)}  # none lost, none twice
    for trial in trials:  # a rerun trial kept its configuration
        (record,) = [r for r in done if r["task_id"] == trial.number]
        assert record["values"]["alpha"] == repr(trial.params["alpha"])
        assert f"Test accuracy: {trial.value:.6f}" in (lab / str(trial.number) / "stdout").read_text()


def test_a_result_committed_but_not_told_before_a_crash_is_told_on_resume_without_rerunning(tmp_path):
    assert search(tmp_path, "random", 2, "--seed", "1").code == 0
    lab = tmp_path / "pataslab/s"
    told = study_trials(lab)[1].value
    # As if the coordinator died after trial 1's task was committed but before Optuna heard of it.
    lines = (lab / "study.journal").read_text().splitlines(keepends=True)
    (told_line,) = [line for line in lines if '"op_code":6' in line and '"trial_id":1,' in line]
    (lab / "study.journal").write_text("".join(line for line in lines if line is not told_line))
    assert [t.state.name for t in study_trials(lab)] == ["COMPLETE", "RUNNING"]
    records = journal(lab)
    run = search(tmp_path, "random", 2, "--seed", "1")
    assert run.code == 0, run.stderr
    trials = study_trials(lab)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"] and trials[1].value == told
    assert journal(lab) == records  # nothing ran again


def sleeping(marker: str) -> bool:
    """A `sleep MARKER` process runs (not merely a command line that mentions it)."""
    return any(Path(f"/proc/{pid}/cmdline").read_bytes() == f"sleep\0{marker}\0".encode() for pid in processes_with(f"sleep {marker}"))


def test_a_lost_agent_s_trial_reruns_with_the_same_configuration(tmp_path):
    marker = f"{os.getpid()}.5"
    # The first attempt of the first trial runs until its agent is killed; its rerun ends at once.
    command = f"[ $PATAS_ATTEMPT$PATAS_TASK_ID = 10 ] && sleep {marker}; echo Test accuracy: 0.5 {{hidden}} {{activation}} {{alpha}}"
    process = start_patas("explore", "--type", "random", "--trials", "2", "--cmd", command, *SPACE, *OBJECTIVE,
                          "-j", "1", "--name", "s", "-y", cwd=tmp_path)  # fmt: skip
    deadline = time.monotonic() + 60
    while not sleeping(marker) and time.monotonic() < deadline:  # the first trial's task is running
        time.sleep(0.05)
    (agent,) = children_running(process.pid, "patas.agent")
    os.kill(agent, signal.SIGKILL)
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    lab = tmp_path / "pataslab/s"
    trials = study_trials(lab)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    done = [r for r in journal(lab) if r["outcome"] == "done"]
    assert sorted((r["task_id"], r["attempt"] if r["task_id"] == 0 else 1) for r in done) == [(0, 2), (1, 1)]
    assert done[[r["task_id"] for r in done].index(0)]["values"]["alpha"] == repr(trials[0].params["alpha"])


def test_a_budget_stops_starting_trials(tmp_path):
    run = patas("explore", "--type", "random", "--budget", "2s", "--cmd", "sleep 0.4; echo Test accuracy: 1 {hidden} {activation} {alpha}",
                *SPACE, *OBJECTIVE, "-j", "1", "--name", "s", "-y", cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run.stderr
    trials = study_trials(tmp_path / "pataslab/s")
    assert 1 <= len(trials) <= 6 and all(t.state.name == "COMPLETE" for t in trials)
    assert f"Finished: {len(trials)} done, 0 failed" in run.stderr


def test_status_counts_a_search_s_trials_from_its_study(tmp_path):
    # Its tasks are the trials the sampler chose, not a grid's: status said "0 done, 3 pending".
    assert search(tmp_path, "random", 3, "--seed", "5").code == 0
    assert patas("status", "s", cwd=tmp_path).stdout.splitlines()[1].strip() == "3 tasks: 3 done, 0 running, 0 pending, 0 failed attempts, 0 given up"
    assert search(tmp_path, "random", 5, "--seed", "5").code == 0  # continued to 5 trials
    shown = json.loads(patas("status", "--json", cwd=tmp_path).stdout)["experiments"][0]
    assert (shown["total"], shown["done"], shown["pending"]) == (5, 5, 0)


def test_status_read_again_in_one_process_follows_the_study_and_survives_a_damaged_one(tmp_path):
    # The dashboard asks every second, so a search's counts are kept until their files change.
    from patas.analysis.status import lab_status

    def counts():  # type: ignore[no-untyped-def]
        shown = lab_status(tmp_path / "pataslab").experiments[0]
        return shown.total, shown.done

    assert search(tmp_path, "random", 2, "--seed", "6").code == 0
    assert counts() == (2, 2) == counts()
    assert search(tmp_path, "random", 3, "--seed", "6").code == 0
    assert counts() == (3, 3)
    with open(tmp_path / "pataslab/s/study.journal", "a") as study:
        study.write("[1, 2]\n")  # Optuna's replay raises TypeError on it
    assert counts() == (None, 3)  # the journal's done tasks; a run says what is wrong (docs/errors.md)


def test_an_experiment_file_s_search_takes_trials_budget_and_seed_from_the_flags(tmp_path):
    # They were refused: "--trials needs a search: add --type", of a file that has one.
    assert search(tmp_path, "random", 2, "--seed", "4").code == 0
    again = patas("explore", "--experiment", "pataslab/s/experiment.yaml", "--trials", "4", "-j", "2", "-y", cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert "2 done, 0 failed, 2 skipped (done before)" in again.stderr
    assert len(study_trials(tmp_path / "pataslab/s")) == 4
    assert yaml.safe_load((tmp_path / "pataslab/s/experiment.yaml").read_text())["search"]["trials"] == 4
    other = patas("explore", "--experiment", "pataslab/s/experiment.yaml", "--prune", "asha", "-y", cwd=tmp_path)
    assert (other.code, other.stderr) == (
        1, "Error: --prune: experiment 's' has its own search (its file's 'search:'); change it there, or give --type too for another search\n"
    )  # fmt: skip


def test_parse_query_and_summary_read_a_search(tmp_path):
    command = f"EPOCHS=3 EPOCH_SECONDS=0 {TRAIN} {{hidden}} {{activation}} {{alpha}}"
    run = search(tmp_path, "tpe", 4, "--seed", "2", "--report", "min", "loss", "epoch (@int@) loss (@float@)", command=command)
    assert run.code == 0, run.stderr
    lab = tmp_path / "pataslab/s"
    early = patas("summary", "-e", "pataslab/s", cwd=tmp_path)  # not parsed yet: its objective is read now
    assert early.code == 0, early.stderr
    assert not list(lab.glob("s*.csv"))  # and nothing is written
    plot = patas("draw", "lines", "-e", "pataslab/s", "--x-column", "in_hidden", "--y-column", "out_test_acc", "--output", "s.png", cwd=tmp_path)
    assert plot.code == 0, plot.stderr
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(lab.glob("s*.csv"))
    assert patas("parse", "-e", "pataslab/s", cwd=tmp_path).code == 0
    header = (lab / "s.csv").read_text().splitlines()[0].split(",")
    assert "out_test_acc" in header and header[-2:] == ["trial", "trial_state"]
    assert (lab / "s_reports.csv").read_text().startswith("task_id,trial,step,out_loss\n0,0,1,")
    steps = patas("query", "SELECT count(*) AS n FROM s_reports", cwd=tmp_path)
    assert steps.stdout == "n\n12\n", steps.stderr
    states = patas("query", "SELECT trial_state, count(*) AS n FROM s GROUP BY 1", cwd=tmp_path)
    assert states.stdout == "trial_state,n\ncomplete,4\n", states.stderr
    best = max(t.value for t in study_trials(lab))
    summary = patas("summary", "-e", "pataslab/s", cwd=tmp_path)
    assert summary.code == 0, summary.stderr
    first = dict(zip(summary.stdout.splitlines()[0].split(","), summary.stdout.splitlines()[1].split(",")))
    assert float(first["mean"]) == best and first["verdict"] == "best"
    assert summary.stdout == early.stdout


@pytest.mark.parametrize(
    "flag",
    [
        ["--objective", "max", "acc", "acc (@float@)"],
        ["--report", "min", "loss", "loss (@float@)"],
        ["--prune", "asha"],
        ["--trials", "5"],
        ["--budget", "10m"],
        ["--seed", "3"],
    ],
)
def test_every_search_flag_on_a_grid_is_refused_not_ignored(tmp_path, flag):
    # A grid skips importing the searches' module when no search flag is given
    # (patas.cli.explore._SEARCH_FLAGS): each flag must still reach make_search's check.
    run = patas("explore", "--cmd", "echo {x}", "--vl", "x", "1", *flag, "-y", cwd=tmp_path)
    assert run.code == 1, run.stderr
    assert run.stderr.strip() == f"Error: {flag[0]} needs a search: add --type random, sobol or tpe (a grid runs every combination)"
    assert not (tmp_path / "pataslab").exists()
