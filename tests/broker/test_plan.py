"""Planning against a real pataslab folder: what is done, which ids new tasks get."""

from patas.broker.plan import TaskFilter, plan_experiment
from patas.common.config import experiment_from_flags
from patas.common.lab import AttemptRecord, ExperimentLab, Outcome
from patas.common.sweep import tasks
from patas.common.variables import list_variable


def grid(a_values, repeat=1):
    return experiment_from_flags("grid", ["run {a}"], [list_variable("a", a_values, "t")], repeat, 3, ".", None)


def record(task, task_id, attempt=1, outcome=Outcome.DONE):
    return AttemptRecord(
        task_id, task.key, attempt, outcome, 0, task.combination_id, task.repeat_id, dict(task.values), 0, "grid", 3,
        0.0, 1.0, "cluster", "node0", "localhost", 0, 0, 0, 0, 0, 0, ".",
    )


def lab_with(tmp_path, experiment, done_ids, failed_ids=()):
    lab = ExperimentLab(tmp_path, "grid")
    lab.path.mkdir()
    lines = []
    for task_id, task in enumerate(tasks(experiment)):
        if task_id in done_ids:
            (lab.path / str(task_id)).mkdir()
            (lab.path / str(task_id) / "stdout").write_text("ok\n")
            lines.append(record(task, task_id).to_json())
        if task_id in failed_ids:
            (lab.path / str(task_id)).mkdir(exist_ok=True)
            (lab.path / str(task_id) / "attempt-2.stdout").write_text("boom\n")
            lines.append(record(task, task_id, 2, Outcome.FAILED).to_json())
    lab.journal_path.write_text("".join(line + "\n" for line in lines))
    lab.write_definition(experiment.to_record())
    return lab


def test_done_tasks_are_skipped_and_failed_ones_continue_their_attempt_numbers(tmp_path):
    experiment = grid(["1", "2", "3", "4"])
    lab = lab_with(tmp_path, experiment, done_ids={0, 2}, failed_ids={3})
    plan = plan_experiment(0, experiment, lab, redo=False)
    assert (plan.done, plan.to_run, plan.changes) == (2, 2, [])
    assert [(p.task_id, p.first_attempt) for p in plan.pending()] == [(1, 1), (3, 3)]


def test_a_deleted_task_folder_means_the_task_runs_again(tmp_path):
    experiment = grid(["1", "2", "3"])
    lab = lab_with(tmp_path, experiment, done_ids={0, 1, 2})
    (lab.path / "1" / "stdout").unlink()
    (lab.path / "1").rmdir()
    assert [p.task_id for p in plan_experiment(0, experiment, lab, redo=False).pending()] == [1]


def test_redo_runs_everything(tmp_path):
    experiment = grid(["1", "2"])
    lab = lab_with(tmp_path, experiment, done_ids={0, 1})
    # Attempt numbers go on, so no earlier attempt's files are ever overwritten.
    assert [(p.task_id, p.first_attempt) for p in plan_experiment(0, experiment, lab, redo=True).pending()] == [(0, 2), (1, 2)]


def test_an_edited_grid_keeps_done_tasks_and_gives_new_ones_free_ids(tmp_path):
    lab = lab_with(tmp_path, grid(["1", "2", "3"]), done_ids={0, 1, 2})
    edited = grid(["1", "3", "5"])
    plan = plan_experiment(0, edited, lab, redo=False)
    assert plan.changes == ["variable a: +5 -2"]
    assert (plan.done, plan.obsolete, plan.to_run) == (2, 1, 1)
    # "run 5" would naturally be task 2, but task 2 holds "run 3"... which is done and kept;
    # "run 3" keeps id 2, and the new task takes the first id nobody holds.
    (new,) = plan.pending()
    assert (new.task.commands, new.task_id) == (("run 5",), 3)


def test_task_filter_syntax():
    assert TaskFilter.parse("grid:3:5") == TaskFilter("grid", 3, 5)
    assert TaskFilter.parse("7") == TaskFilter(None, 7, 7)
    assert TaskFilter.parse(":4").accepts("grid", 4) and not TaskFilter.parse(":4").accepts("grid", 5)
    assert TaskFilter.parse("other:1:2").accepts("grid", 99)


def test_a_crash_while_replacing_a_committed_output_leaves_the_task_not_done(tmp_path):
    experiment = grid(["1", "2"])
    lab = lab_with(tmp_path, experiment, done_ids={0, 1})
    task = next(tasks(experiment))
    with open(lab.journal_path, "a") as journal:  # --redo of task 0 died after its first step
        journal.write(record(task, 0, 2, Outcome.REPLACING).to_json() + "\n")
    assert [(p.task_id, p.first_attempt) for p in plan_experiment(0, experiment, lab, redo=False).pending()] == [(0, 3)]
    with open(lab.journal_path, "a") as journal:
        journal.write(record(task, 0, 3).to_json() + "\n")
    assert list(plan_experiment(0, experiment, lab, redo=False).pending()) == []
